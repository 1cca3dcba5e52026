"""The review page's queue: the records due soonest first, each with its deadline and who holds
it; accepting the AI's answer for many records at once; releasing a claim; and the tenant's
report behind the same sign-in (the bearer-key route, api/monitoring.py, is for programs).

The record and its decision form: `review_page`. Included before it in the app, so its fixed
paths (`/report`, `/accept`) are not read as record ids.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, get_args
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from enrichment.api.deps import DbSession
from enrichment.api.monitoring import Hours
from enrichment.api.review_page import CsrfForm, RecordId
from enrichment.api.review_session import Page, Reviewer, ReviewPage
from enrichment.core import review_claims
from enrichment.core.models import utcnow
from enrichment.core.taxonomy import Label
from enrichment.reporting import report_html, reports
from enrichment.reviews import bulk, decide, queue

router = APIRouter(include_in_schema=False)

QUEUE_SHOWN = 100
NAMED_AT_MOST = 10  # a bulk accept's confirmation names this many records, then counts
NEED_REASON = (
    "Not accepted: give the reason for accepting the AI's answers (it is each review's note)."
)
NONE_CHOSEN = "Not accepted: tick the records to accept, or accept all the filter shows."


class Filters(BaseModel):
    """The queue's filter (the query string; an empty field: any)."""

    kind: str = ""
    label: str = ""
    severity: str = ""

    def only(self) -> queue.Filter:
        kind = self.kind if self.kind in get_args(queue.Kind) else None
        label = self.label if self.label in set(Label) else None
        severity = self.severity if self.severity in queue.SEVERITIES else None
        return queue.Filter(kind=kind, label=label, severity=severity)  # type: ignore[arg-type]


class BulkForm(Filters):
    csrf: str = ""
    ids: list[int] = []
    scope: str = "selected"  # "selected": the ticked records; "filtered": all the filter shows
    note: str = ""


@router.get("/review/{tenant}")
def queue_page(page: ReviewPage, s: DbSession, f: Annotated[Filters, Query()]) -> Response:
    """The queue, due soonest first, with the confirmation of the last decision once."""
    if page.who is None:
        return page.redirect("/login")
    tenant, visit, _ = page.who
    waiting = _waiting(page, s, f.only())
    response = page.render(
        "queue.html", queue=waiting, flash=visit.flash, filters=f, now=utcnow(),
        kinds=queue.KINDS, severities=queue.SEVERITIES, labels=list(Label),
    )  # fmt: skip
    return page.keep(response, replace(visit, flash=None)) if visit.flash else response


def _waiting(page: Page, s: DbSession, only: queue.Filter) -> queue.Queue:
    assert page.who is not None
    reviews = page.settings.reviews
    return queue.queue(
        s, page.who.tenant.id, now=utcnow(), limit=QUEUE_SHOWN, reviews=reviews, only=only
    )


@router.post("/review/{tenant}/accept")
def accept_ai(page: ReviewPage, form: Annotated[BulkForm, Form()], s: DbSession) -> Response:
    """Accept the AI's answer (its label and its resolution's actions) for the ticked records,
    or for all the filter shows: each a review of its own, in its own transaction, with the
    reason as its note. Back to the queue with what was accepted and what was skipped, why."""
    who = page.gate(form.csrf)
    if isinstance(who, Response):
        return who
    note = form.note.strip()
    if not note or len(note) > 2000:
        return _back(page, who, form, NEED_REASON)
    ids = form.ids if form.scope == "selected" else _filtered_ids(page, s, form)
    if not ids:
        return _back(page, who, form, NONE_CHOSEN)
    accepted, skipped = _accept_each(s, who, ids[:QUEUE_SHOWN], note)
    page.log("review.bulk_accepted", accepted=len(accepted), skipped=len(skipped))
    return _back(page, who, form, _bulk_flash(accepted, skipped))


def _filtered_ids(page: Page, s: DbSession, form: BulkForm) -> list[int]:
    return [item.record_id for item in _waiting(page, s, form.only()).items]


def _accept_each(
    s: DbSession, who: Reviewer, ids: list[int], note: str
) -> tuple[list[str], list[str]]:
    """Accept each record in a transaction of its own; (accepted ids, "EXT (why)" skipped)."""
    accepted, skipped = [], []
    for record_id in dict.fromkeys(ids):
        try:
            done = bulk.accept_one(
                s, who.tenant, record_id, reviewer=who.name, actor=who.actor, note=note,
                now=utcnow(),
            )  # fmt: skip
        except decide.ReviewError as exc:
            s.rollback()
            skipped.append(f"{_external_id(s, who, record_id)} ({exc})")
            continue
        s.commit()
        accepted.append(done.external_id)
    return accepted, skipped


def _external_id(s: DbSession, who: Reviewer, record_id: int) -> str:
    rec = queue.in_queue(s, who.tenant.id, record_id)
    return rec.external_id if rec is not None else f"record {record_id}"


def _bulk_flash(accepted: list[str], skipped: list[str]) -> str:
    said = f"Accepted the AI's answer for {len(accepted)}{_named(accepted)}."
    if skipped:
        said += f" Skipped {len(skipped)}: {'; '.join(skipped[:NAMED_AT_MOST])}"
        said += (
            f" and {len(skipped) - NAMED_AT_MOST} more." if len(skipped) > NAMED_AT_MOST else "."
        )
    return said


def _named(ids: list[str]) -> str:
    if not ids:
        return ""
    more = f" and {len(ids) - NAMED_AT_MOST} more" if len(ids) > NAMED_AT_MOST else ""
    return f" ({', '.join(ids[:NAMED_AT_MOST])}{more})"


def _back(page: Page, who: Reviewer, f: Filters, flash: str) -> Response:
    """To the queue, with the same filter and a one-line confirmation."""
    query = urlencode({k: v for k, v in (("kind", f.kind), ("label", f.label),
                                         ("severity", f.severity)) if v})  # fmt: skip
    return page.keep(page.redirect(f"?{query}" if query else ""), replace(who.visit, flash=flash))


@router.post("/review/{tenant}/{record_id}/release")
def release(
    page: ReviewPage, record_id: RecordId, form: Annotated[CsrfForm, Form()], s: DbSession
) -> Response:
    """Give the record back to the queue (only the reviewer's own claim)."""
    who = page.gate(form.csrf)
    if isinstance(who, Response):
        return who
    freed = review_claims.release(s, who.tenant.id, record_id, who.name)
    s.commit()
    page.log("review.released", record_id=record_id, freed=freed)
    flash = "Released: others can open it now." if freed else "You held no claim on it."
    return page.keep(page.redirect(), replace(who.visit, flash=flash))


@router.get("/review/{tenant}/report", response_class=HTMLResponse)
def report_page(page: ReviewPage, s: DbSession, hours: Hours = 24.0) -> Response:
    """The tenant's report (the same page as /api/enrichment/report/{tenant}.html) for a
    signed-in reviewer."""
    if page.who is None:
        return page.redirect("/login")
    rep = reports.report(s, page.who.tenant, page.settings, now=utcnow(), hours=hours)
    return HTMLResponse(report_html.render(rep, nonce=page.request.state.csp_nonce))
