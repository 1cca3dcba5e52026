"""The review page for people: sign in with your own reviewer key, work the queue, decide.

Server-rendered HTML (Jinja2, autoescaped in every template) from the API process, for
people with a browser rather than for the bearer-key API, so its routes stay out of the
OpenAPI schema. It works without JavaScript: the label <select> sits in the decision form, and
"Show its actions" posts the form back to list the chosen label's allowed actions (saving
nothing). The form says whose actions it showed (`shown`): a save whose label differs is
refused with one line and the chosen label's actions, never saved with another label. One
small nonce'd script (_keys.html) lists the actions as the label changes and adds keyboard
shortcuts. Opening a record claims it (core/review_claims.py): another reviewer sees it taken
and cannot decide it (409) until the claim runs out, is released or the record is decided.
After a decision the next record due opens. The queue: `review_queue_page`. Sessions, CSRF
tokens and rendering: `review_session`; security headers: `guards`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Annotated, Any, NamedTuple

import structlog
from fastapi import APIRouter, Form, Path
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from enrichment.api.deps import DbSession
from enrichment.api.review_session import (
    COOKIE,
    CSRF_FAILED,
    Page,
    Reviewer,
    ReviewPage,
    anonymous,
    signed_in,
)
from enrichment.core import (
    audit,
    order_events,
    review_claims,
    review_sessions,
    reviewers,
    selection,
    tenants,
)
from enrichment.core.models import ExceptionRecord, utcnow
from enrichment.core.story import Story, story
from enrichment.core.taxonomy import ALLOWED_ACTIONS, Label
from enrichment.reviews import bulk, decide, queue

log = structlog.get_logger(__name__)
router = APIRouter(include_in_schema=False)

WRONG_KEY = (
    "That key does not open this tenant's review page: check it, or ask an admin for a key "
    "of your own."
)
NOT_WAITING = "Record {} is not waiting for a review (decided, requeued, or not here)."
TAKEN = "Not saved: {} holds record {} until {:%H:%M} UTC; it is theirs to decide until then."
OTHER_LABEL = (
    "Not saved: you chose {0}, but the actions listed were {1}. Here are {0}'s: tick the ones"
    " to send, then save."
)
THROTTLED = "Too many wrong keys {}: sign-in is paused; try again in {} s."
THROTTLED_BY = {
    review_sessions.ADDRESS: "from this address",
    review_sessions.TENANT: "for this tenant",
}
FORM_PROBLEMS = {
    "actions": "an unknown action, or more than 5",
    "note": "a note over 2,000 characters",
}


@dataclass(frozen=True)
class Draft:
    """The decision form as the person left it, with the one line that says what is wrong."""

    label: Label | None
    actions: tuple[str, ...] = ()
    note: str = ""
    error: str | None = None


class CsrfForm(BaseModel):
    csrf: str = ""  # optional here: a missing token is a 403, not FastAPI's 422


class LoginForm(CsrfForm):
    key: str = ""


class DecisionForm(CsrfForm):
    label: str = ""
    shown: str = ""  # the label whose actions the form listed ("-": none); "": not said
    actions: list[str] = []
    note: str = ""
    show: str = ""  # "Show its actions": list the chosen label's actions, save nothing


class InvalidForm(decide.ReviewError):
    status = 422


RecordId = Annotated[int, Path(ge=1, le=2**31 - 1)]  # beyond it, PostgreSQL's integer overflows


@router.get("/review/{tenant}/login")
def login_form(page: ReviewPage) -> Response:
    visit = page.visit or anonymous(page.tenant)
    return page.keep(page.render("login.html", visit=visit, error=None), visit)


@router.post("/review/{tenant}/login")
def login(page: ReviewPage, form: Annotated[LoginForm, Form()], s: DbSession) -> Response:
    """A new session for the reviewer whose own key this is (the name on every decision
    comes from the key), and a new CSRF token; while this address or tenant is locked out,
    429 without looking at the key."""
    if not page.csrf_ok(form.csrf):
        return page.problem(CSRF_FAILED, 403)
    row = tenants.by_name(s, page.tenant)
    tenant_id, address, now = row.id if row else None, _address(page), utcnow()
    limits = page.settings.reviews
    locked = review_sessions.lockout(s, tenant_id, address, now=now, limits=limits)
    if locked is not None:
        log.info("review.sign_in_throttled", tenant=page.tenant, address=address, by=locked.by)
        if row is not None:
            _audit_address(s, row.id, address, audit.SIGNIN_THROTTLED, by=locked.by)
            s.commit()
        return _throttled(page, locked)
    person = reviewers.by_key(s, row.id, form.key) if row is not None else None
    if row is None or person is None:
        return _refused(page, s, tenant_id, address)
    if row.disabled_at is not None:  # said only to a reviewer whose key matched
        return page.render("login.html", error=f"tenant {row.name} is disabled", status_code=403)
    if page.who is not None:
        review_sessions.end(s, row.id, page.who.visit.token or "", now=now)
    review_sessions.prune(s, row.id, now=now, limits=limits)
    token = review_sessions.start(s, person, now=now)
    audit.record(
        s, row.id, audit.reviewer_actor(person.name), audit.SIGNED_IN, person.name, now=now,
        address=address,
    )  # fmt: skip
    s.commit()
    log.info("review.signed_in", tenant=page.tenant, reviewer=person.name)
    return page.keep(page.redirect(), signed_in(page.tenant, token))


def _audit_address(s: Session, tenant_id: int, address: str, action: str, **details) -> None:
    audit.record(s, tenant_id, f"address:{address}", action, **details)


def _address(page: Page) -> str:
    client = page.request.client  # behind a proxy: run uvicorn with --proxy-headers
    return client.host if client else "unknown"


def _refused(page: Page, s: Session, tenant_id: int | None, address: str) -> Response:
    """Count the refusal; a refusal that reaches a limit is a burst, logged for the alert."""
    limits = page.settings.reviews
    burst = review_sessions.refuse(s, tenant_id, address, now=utcnow(), limits=limits)
    if tenant_id is not None:
        by = burst.by if burst is not None else None
        _audit_address(s, tenant_id, address, audit.SIGNIN_REFUSED, burst=by)
    s.commit()
    log.info("review.sign_in_refused", tenant=page.tenant, address=address)
    if burst is not None:
        log.warning(
            "review.signin_burst", tenant=page.tenant, address=address, by=burst.by,
            paused_s=burst.retry_after_s,
        )  # fmt: skip
    return page.render("login.html", error=WRONG_KEY, status_code=401)


def _throttled(page: Page, locked: review_sessions.Lockout) -> Response:
    error = THROTTLED.format(THROTTLED_BY[locked.by], locked.retry_after_s)
    response = page.render("login.html", error=error, status_code=429)
    response.headers["Retry-After"] = str(locked.retry_after_s)
    return response


@router.post("/review/{tenant}/logout")
def logout(page: ReviewPage, form: Annotated[CsrfForm, Form()], s: DbSession) -> Response:
    """End the session on the server (a copied cookie stops at once) and drop the cookie."""
    if not page.csrf_ok(form.csrf):
        return page.problem(CSRF_FAILED, 403)
    if page.who is not None and page.who.visit.token:
        review_sessions.end(s, page.who.tenant.id, page.who.visit.token, now=utcnow())
        audit.record(s, page.who.tenant.id, page.who.actor, audit.SIGNED_OUT, page.who.name)
        s.commit()
        page.log("review.signed_out")
    response = page.redirect("/login")
    https = page.request.url.scheme == "https"
    response.delete_cookie(COOKIE, path=page.base, secure=https, httponly=True, samesite="strict")
    return response


@router.get("/review/{tenant}/{record_id}")
def record_page(page: ReviewPage, record_id: RecordId, s: DbSession, label: str = "") -> Response:
    """One record and the decision form; `?label=` chooses whose actions the form offers."""
    if page.who is None:
        return page.redirect("/login")
    rec = queue.in_queue(s, page.who.tenant.id, record_id)
    if rec is None:
        return page.problem(NOT_WAITING.format(record_id))
    chosen = _label(label or rec.ai_label)
    error = "Unknown label: choose one from the list." if label and chosen is None else None
    claim_s = page.settings.reviews.claim_s
    review_claims.claim(s, rec.tenant_id, rec.id, page.who.name, now=utcnow(), claim_s=claim_s)
    s.commit()
    response = _record_view(page, s, rec, Draft(chosen, error=error))
    visit = page.who.visit
    return page.keep(response, replace(visit, flash=None)) if visit.flash else response


@router.post("/review/{tenant}/{record_id}")
def decide_record(
    page: ReviewPage, record_id: RecordId, form: Annotated[DecisionForm, Form()], s: DbSession
) -> Response:
    """Write the decision; back to the queue with a confirmation, or the form with why not."""
    who = page.gate(form.csrf)
    if isinstance(who, Response):
        return who
    rec = queue.in_queue(s, who.tenant.id, record_id)
    if rec is None:
        return page.problem(NOT_WAITING.format(record_id))
    held = review_claims.taken_by_other(s, who.tenant.id, rec.id, who.name, now=utcnow())
    if held is not None:
        return page.problem(TAKEN.format(held.reviewer, rec.external_id, held.until), 409)
    draft = Draft(_label(form.label), tuple(form.actions), form.note)
    other = _other_label(form)
    if form.show or other:
        return _record_view(page, s, rec, replace(draft, error=other), 422 if other else 200)
    try:
        review = _review_in(draft, who.name)
        done = decide.submit(s, who.tenant, rec.id, review, actor=who.actor)
    except (InvalidForm, decide.ActionsNotAllowed) as exc:
        s.rollback()
        return _record_view(page, s, rec, replace(draft, error=str(exc)), exc.status)
    except decide.ReviewError as exc:  # another person decided it a moment ago
        s.rollback()
        return page.problem(str(exc), exc.status)
    s.commit()
    page.log("review.decided", record=done.external_id, label=str(review.label))
    actions = ", ".join(str(a) for a in review.actions) or "no actions"
    flash = f"Saved: {done.external_id} is {review.label} with {actions}; it left the queue."
    return page.keep(_next(page, s, who), replace(who.visit, flash=flash))


def _next(page: Page, s: Session, who: Reviewer) -> Response:
    """To the next record due that no one else holds, or the queue when there is none."""
    reviews = page.settings.reviews
    up = queue.next_up(s, who.tenant.id, who.name, now=utcnow(), reviews=reviews)
    # "#main": the next record from its top (else the browser keeps the form's "#decide").
    return page.redirect(f"/{up}#main" if up is not None else "")


@router.post("/review/{tenant}/{record_id}/requeue")
def requeue_record(
    page: ReviewPage, record_id: RecordId, form: Annotated[CsrfForm, Form()], s: DbSession
) -> Response:
    """Hand an escalated record back to the AI: its retries start over at the next sweep."""
    who = page.gate(form.csrf)
    if isinstance(who, Response):
        return who
    rec = queue.in_queue(s, who.tenant.id, record_id)
    if rec is None or rec.escalated_at is None:
        return page.problem(f"Record {record_id} is not an escalated record waiting for a review.")
    held = review_claims.taken_by_other(s, who.tenant.id, rec.id, who.name, now=utcnow())
    if held is not None:
        return page.problem(TAKEN.format(held.reviewer, rec.external_id, held.until), 409)
    external_id = rec.external_id
    reset = selection.requeue(s, who.tenant.id, record_id=rec.id)
    if reset:
        audit.record(s, who.tenant.id, who.actor, audit.REQUEUED, external_id)
        review_claims.release(s, who.tenant.id, rec.id)
    s.commit()
    page.log("review.requeued", record=external_id, reset=reset)
    if reset:
        flash = f"{external_id} went back to the AI: the next sweep enriches it again."
    else:
        flash = f"{external_id} stays here: a worker holds it right now; try again in a minute."
    return page.keep(page.redirect(), replace(who.visit, flash=flash))


def _other_label(form: DecisionForm) -> str | None:
    """Why a save is refused when its label is not the one whose actions the form listed
    (the select changed after the list was shown, with no script to list the new ones)."""
    shown = "" if form.shown == "-" else form.shown
    if not form.shown or form.label == shown:
        return None
    return OTHER_LABEL.format(form.label, f"{shown}'s" if shown else "none")


def _label(raw: str | None) -> Label | None:
    try:
        return Label(raw) if raw else None
    except ValueError:
        return None


def _review_in(draft: Draft, reviewer: str) -> decide.ReviewIn:
    """The form as the domain's ReviewIn, or InvalidForm with one line a person can act on."""
    if draft.label is None:
        raise InvalidForm("Choose a label first.")
    note = draft.note.strip() or None
    try:
        return decide.ReviewIn(
            label=draft.label, actions=list(draft.actions), note=note, reviewer=reviewer
        )
    except ValidationError as exc:
        field = str(exc.errors()[0]["loc"][0])
        raise InvalidForm(f"Not saved: {FORM_PROBLEMS.get(field, field)}.") from None


def _record_view(
    page: Page, s: Session, rec: ExceptionRecord, draft: Draft, status_code: int = 200
) -> Response:
    assert page.who is not None  # every caller checked
    now = utcnow()
    told = story(s, page.who.tenant, rec.external_id, now=now)
    return page.render(
        "record.html",
        status_code=status_code,
        flash=page.who.visit.flash,
        held=review_claims.holder(s, page.who.tenant.id, rec.id, now=now),
        waiting_since=queue.waiting_since(rec),
        ai_actions=bulk.ai_actions(rec.ai_resolution),
        allowed_by_label={str(k): sorted(map(str, v)) for k, v in ALLOWED_ACTIONS.items()},
        rec=rec,
        story=told,
        draft=draft,
        kind=queue.kind_of(rec),
        timeline=_timeline(told),
        labels=list(Label),
        allowed=sorted(ALLOWED_ACTIONS[draft.label]) if draft.label else [],
    )


class Moment(NamedTuple):
    at: datetime | None
    what: str
    detail: str


def _detail(event: dict) -> str:
    # An object detail as `key: value` text; the template escapes it like any text.
    return order_events.detail_text(event.get("detail"))


def _timeline(told: Story | None) -> list[Moment]:
    """The order's events, the exception, its escalation and its webhook events, in time
    order (an event with an unreadable time goes last)."""
    if told is None:
        return []
    rec, escalation = told.record, told.escalation
    items = [
        Moment(_when(e.get("at")), f"{e.get('source')}: {e.get('type')}", _detail(e))
        for e in rec.order_events
    ]
    items.append(Moment(rec.created_at, "exception recorded", f"{rec.reason_code}, {rec.severity}"))
    if escalation is not None:
        items.append(
            Moment(escalation.escalated_at, "escalated to a person", escalation.reason or "")
        )
    items += [Moment(e.created_at, f"event {e.type}", e.status) for e in told.events]
    return sorted(items, key=lambda m: (m.at is None, m.at or rec.created_at))


def _when(raw: Any) -> datetime | None:
    try:
        at = datetime.fromisoformat(str(raw))
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)  # stored times are UTC
