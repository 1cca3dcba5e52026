"""A person's decision on one record, written in one transaction with its events.

What a review writes: a `reviews` row (who, when, label, actions, note, and the AI's label,
confidence and source at that moment); on the record, the final label and actions with their
source ("human") beside the AI's fields, which keep what the AI said (or stay NULL), and the
review time, which closes the escalation; the actions a person chose that are not recorded
yet; and the events `record.reviewed` and one `action.requested` per new action, which the
outbox delivers like the AI's decisions.

Actions the AI chose from the tenant's `approval_actions` wait AWAITING_APPROVAL, without an
event (kind "approval"). The review approves those it keeps in its actions (RECORDED, with
their action.requested event) and declines the others (DECLINED: never sent); an override
that keeps a declined one approves it. Each approval or refusal is an audit row.

One review per record: another answers AlreadyReviewed unless it says `override`, and then it
is a new row that names the one it overrides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.orm import Session

from enrichment.core import audit, review_claims
from enrichment.core.crashpoints import crash_point
from enrichment.core.models import (
    AWAITING_APPROVAL,
    DECLINED,
    HUMAN,
    RECORDED,
    ExceptionRecord,
    ResolutionAction,
    Review,
    Tenant,
    in_review,
    utcnow,
)
from enrichment.core.outbox import ACTION_REQUESTED, REVIEWED, event_row, insert_events
from enrichment.core.stages import Stage
from enrichment.core.taxonomy import ALLOWED_ACTIONS, Action, Label, disallowed_actions

ESCALATION, APPROVAL, AUDIT = "escalation", "approval", "audit"
# An action a review may approve: one waiting for a person, or one declined before (an override).
UNSENT = (AWAITING_APPROVAL, DECLINED)
# PostgreSQL text cannot hold NUL: refused as invalid input, not failed as a server error.
NO_NUL = r"^[^\x00]*$"
# Something visible once stripped (what `strip_whitespace` leaves must not be empty), no NUL.
VISIBLE = r"^[^\x00]*[^\x00\s][^\x00]*$"


class ReviewIn(BaseModel):
    """A decision as a person gives it (the API's body and the page's form, validated)."""

    model_config = ConfigDict(extra="forbid")

    label: Label
    actions: list[Action] = Field(default_factory=list, max_length=5)
    note: Annotated[str, StringConstraints(max_length=2000, pattern=NO_NUL)] | None = None
    reviewer: (
        Annotated[
            str,
            StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=VISIBLE),
        ]
        | None
    ) = Field(
        default=None,
        description="a registered reviewer of the tenant's (refused if unknown or revoked); "
        "without it the review is attributed to the API key",
    )
    override: bool = False


class ReviewError(ValueError):
    """Why a review was refused; `status` is the HTTP answer it maps to."""

    status = 400


class NotInQueue(ReviewError):
    status = 404


class AlreadyReviewed(ReviewError):
    status = 409


class ActionsNotAllowed(ReviewError):
    status = 422


@dataclass(frozen=True)
class Decided:
    """What a review did: its row id, the record, the actions it requested now (new ones and
    approved ones), and of those awaiting approval, the ones it approved and declined."""

    review_id: int
    record_id: int
    external_id: str
    new_actions: list[str]
    approved: list[str] = field(default_factory=list)
    declined: list[str] = field(default_factory=list)


def submit(
    session: Session,
    tenant: Tenant,
    record_id: int,
    review: ReviewIn,
    *,
    actor: str,
    now: datetime | None = None,
) -> Decided:
    """Check and write `review` of the tenant's record `record_id`, and its audit row, by
    `actor` (core/audit.py; the caller checked `review.reviewer`; the caller commits).
    The review is signed by `review.reviewer` when it names one, else by the actor."""
    now = now or utcnow()
    bad = disallowed_actions(review.label, review.actions)
    if bad:
        names = ", ".join(str(a) for a in bad)
        allowed = ", ".join(sorted(ALLOWED_ACTIONS[review.label])) or "none"
        raise ActionsNotAllowed(
            f"actions not allowed for {review.label}: {names} (allowed: {allowed})"
        )
    rec = _locked_record(session, tenant.id, record_id)
    previous = _latest_review(session, tenant.id, record_id) if rec.reviewed_at else None
    if previous is not None and not review.override:
        raise AlreadyReviewed(
            f"record {rec.external_id!r} was reviewed by {previous.reviewer} at "
            f"{previous.created_at:%Y-%m-%d %H:%M} UTC; send override to replace it"
        )
    row = Review(
        tenant_id=tenant.id,
        record_id=rec.id,
        kind=_kind(rec),
        reviewer=review.reviewer or actor,
        label=str(review.label),
        # Each action once: a repeated one would be one action, and its row is unique.
        actions=list(dict.fromkeys(str(a) for a in review.actions)),
        note=review.note,
        ai_label=rec.ai_label,
        ai_confidence=rec.ai_confidence,
        ai_source=(rec.ai_source or {}).get(Stage.CLASSIFY),
        sampling_probability=rec.sampling_probability,  # its weight in every estimate
        overrides=previous.id if previous is not None else None,
        created_at=now,
    )
    session.add(row)
    rec.final_label, rec.final_actions = row.label, row.actions
    rec.decided_by, rec.reviewed_at = HUMAN, now
    session.flush()
    asked = _request_actions(session, tenant, rec, row, now)
    audit.record(
        session, tenant.id, actor, audit.REVIEWED, rec.external_id, now=now,
        reviewer=row.reviewer, label=row.label, actions=row.actions,
        override=previous is not None, review_id=row.id,
    )  # fmt: skip
    decided = [(audit.ACTION_APPROVED, a) for a in asked.approved]
    for what, name in decided + [(audit.ACTION_DECLINED, a) for a in asked.declined]:
        audit.record(
            session, tenant.id, actor, what, rec.external_id, now=now, action_name=name,
            reviewer=row.reviewer, review_id=row.id,
        )  # fmt: skip
    review_claims.release(session, tenant.id, rec.id)  # decided: no one holds it any more
    session.flush()
    # Not a boundary: the review is one transaction, the caller's. A kill here, with every
    # row written but not committed, leaves the record in the queue as it was.
    crash_point("review.before_commit")
    return Decided(row.id, rec.id, rec.external_id, asked.requested, asked.approved, asked.declined)


def _kind(rec: ExceptionRecord) -> str:
    if rec.escalated_at is not None:
        return ESCALATION
    return APPROVAL if rec.approval_requested_at is not None else AUDIT


def _locked_record(session: Session, tenant_id: int, record_id: int) -> ExceptionRecord:
    """The record, locked against a concurrent review, if a person may decide it now:
    in the queue, or already reviewed (an override)."""
    R = ExceptionRecord
    rec = session.scalar(
        select(R)
        .where(R.tenant_id == tenant_id, R.id == record_id)
        .where(in_review() | R.reviewed_at.is_not(None))
        .with_for_update()
    )
    if rec is None:
        raise NotInQueue(f"record {record_id} is not waiting for a review")
    return rec


def _latest_review(session: Session, tenant_id: int, record_id: int) -> Review | None:
    return session.scalar(
        select(Review)
        .where(Review.tenant_id == tenant_id, Review.record_id == record_id)
        .order_by(Review.id.desc())
        .limit(1)
    )


@dataclass(frozen=True)
class _Asked:
    requested: list[str]  # an action.requested event each, in the review's order
    approved: list[str]
    declined: list[str]


def _request_actions(
    session: Session, tenant: Tenant, rec: ExceptionRecord, review: Review, now: datetime
) -> _Asked:
    """The review's event, then one per action it requests now: each not recorded for this
    record before, and each awaiting approval (or declined before) that it keeps. The
    awaiting ones it leaves out are declined."""
    A = ResolutionAction
    held = {
        a.action: a
        for a in session.scalars(select(A).where(A.tenant_id == tenant.id, A.record_id == rec.id))
    }
    new = [
        A(tenant_id=tenant.id, record_id=rec.id, action=a, created_at=now)
        for a in review.actions
        if a not in held
    ]
    session.add_all(new)
    approved = [held[a] for a in review.actions if a in held and held[a].status in UNSENT]
    declined = [
        a for a in held.values() if a.status == AWAITING_APPROVAL and a.action not in review.actions
    ]
    for action in approved:
        action.status = RECORDED
    for action in declined:
        action.status = DECLINED
    session.flush()
    requested = sorted([*new, *approved], key=lambda a: review.actions.index(a.action))
    subject = {"tenant": tenant.name, "record": rec.external_id}
    decision = {
        "kind": review.kind,
        "label": review.label,
        "actions": review.actions,
        "reviewer": review.reviewer,
        "override": review.overrides is not None,
        "ai_label": review.ai_label,
        "ai_confidence": review.ai_confidence,
    }
    if approved or declined:  # the actions that waited for this person, and their answer
        decision.update(
            approved=[a.action for a in approved], declined=[a.action for a in declined]
        )
    # The review's event first, so it gets the smaller id: a record's events go in order.
    events = [event_row(tenant.id, rec.id, REVIEWED, {**subject, **decision}, now=now)]
    for action in requested:
        data = {**subject, "label": review.label, "action_id": action.id, "action": action.action}
        row = event_row(tenant.id, rec.id, ACTION_REQUESTED, data, now=now, action_id=action.id)
        events.append(row)
    session.execute(insert_events(events))
    return _Asked(
        [a.action for a in requested],
        [a.action for a in approved],
        [a.action for a in declined],
    )
