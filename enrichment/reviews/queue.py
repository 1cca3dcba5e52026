"""The review queue of one tenant: escalated records, records whose actions await approval
(the tenant's `approval_actions`) and the audit sample, oldest first.

An escalated record waits since its escalation; one with actions awaiting approval, or an
audit-sampled one, since the AI resolved it. A review (or a requeue for the AI, for an
escalated record) takes it out.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from enrichment.core.models import (
    AWAITING_APPROVAL,
    ExceptionRecord,
    ResolutionAction,
    in_review,
    review_waiting_since,
)

R = ExceptionRecord
WAITING_SINCE = review_waiting_since()
Kind = Literal["escalation", "approval", "audit"]


def kind_of(rec: ExceptionRecord) -> Kind:
    """Why a queued record waits for a person."""
    if rec.escalated_at is not None:
        return "escalation"
    return "approval" if rec.approval_requested_at is not None else "audit"


class QueueItem(BaseModel):
    """One record waiting for a person, with what they need to decide at a glance."""

    record_id: int
    external_id: str
    kind: Kind = Field(
        description="escalation: the AI gave up; approval: actions the AI chose wait for a "
        "person's approval (keep them in the review's actions to approve, leave them out to "
        "decline); audit: a random sample of AI-resolved records"
    )
    waiting_since: datetime
    reason: str | None = Field(description="why it was escalated")
    reason_code: str
    severity: str
    notes: str | None = Field(description="the customer's note (untrusted text)")
    ai_label: str | None = Field(description="the AI's best guess, if it gave one")
    ai_confidence: float | None
    retry_count: int
    awaiting_approval: list[str] = Field(
        default_factory=list, description="the actions waiting for this person's approval"
    )


class Queue(BaseModel):
    total: int
    oldest_age_s: float | None = Field(description="how long the oldest item has waited")
    items: list[QueueItem] = Field(description="oldest first")


def _item(rec: ExceptionRecord, awaiting: list[str]) -> QueueItem:
    return QueueItem(
        record_id=rec.id,
        external_id=rec.external_id,
        kind=kind_of(rec),
        waiting_since=rec.escalated_at or rec.approval_requested_at or rec.enriched_at,
        reason=rec.escalation_reason,
        reason_code=rec.reason_code,
        severity=rec.severity,
        notes=rec.notes,
        ai_label=rec.ai_label,
        ai_confidence=rec.ai_confidence,
        retry_count=rec.enrichment_retry_count,
        awaiting_approval=awaiting,
    )


def queue(session: Session, tenant_id: int, *, now: datetime, limit: int = 50) -> Queue:
    """The tenant's queue: its size, its oldest wait, and the oldest `limit` items."""
    scoped = (R.tenant_id == tenant_id, in_review())
    total, oldest = session.execute(
        select(func.count(), func.min(WAITING_SINCE)).where(*scoped)
    ).one()
    recs = session.scalars(
        select(R).where(*scoped).order_by(WAITING_SINCE, R.id).limit(limit)
    ).all()
    age = None if oldest is None else (now - _aware(oldest)).total_seconds()
    waiting = awaiting_of(session, tenant_id, [r.id for r in recs])
    return Queue(total=total, oldest_age_s=age, items=[_item(r, waiting[r.id]) for r in recs])


def awaiting_of(session: Session, tenant_id: int, record_ids: list[int]) -> dict[int, list[str]]:
    """Each record's actions AWAITING_APPROVAL (record id -> names), in one query."""
    A = ResolutionAction
    rows = session.execute(
        select(A.record_id, A.action)
        .where(A.tenant_id == tenant_id, A.record_id.in_(record_ids))
        .where(A.status == AWAITING_APPROVAL)
        .order_by(A.id)
    )
    found: dict[int, list[str]] = defaultdict(list)
    for record_id, action in rows:
        found[record_id].append(action)
    return found


def _aware(at: datetime) -> datetime:
    """min() over SQLite's text timestamps comes back naive: it is UTC."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def in_queue(session: Session, tenant_id: int, record_id: int) -> ExceptionRecord | None:
    """The tenant's record `record_id` if it is waiting for a person."""
    return session.scalar(select(R).where(R.tenant_id == tenant_id, R.id == record_id, in_review()))
