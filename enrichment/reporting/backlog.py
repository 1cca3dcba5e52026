"""A tenant's backlog (GET /api/enrichment/backlog/{tenant}): its counts, the records due
next, and the oldest escalated ones."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from enrichment.core.due import is_leased, leased, past_due
from enrichment.core.models import ExceptionRecord as R
from enrichment.core.models import Tenant, in_backlog, is_escalated
from enrichment.reporting.reports import EscalatedItem, escalations, last_error


class BacklogItem(BaseModel):
    record_id: int
    external_id: str
    reason_code: str
    retry_count: int
    next_attempt_at: datetime
    leased: bool
    created_at: datetime
    last_error: str | None


class Backlog(BaseModel):
    tenant: str
    backlog_records: int
    due_now: int = Field(description="next_attempt_at has passed")
    retrying: int = Field(description="failed at least once, retries left")
    leased: int = Field(description="claimed by a sweep, in flight")
    escalated_records: int
    next_up: list[BacklogItem] = Field(description="the first `limit` records by due time")
    escalated: list[EscalatedItem] = Field(
        default_factory=list, description="the oldest `limit` escalated records, with reasons"
    )


def _backlog_item(rec: R, now: datetime) -> BacklogItem:
    return BacklogItem(
        record_id=rec.id,
        external_id=rec.external_id,
        reason_code=rec.reason_code,
        retry_count=rec.enrichment_retry_count,
        next_attempt_at=rec.next_attempt_at,
        leased=is_leased(rec, now),
        created_at=rec.created_at,
        last_error=last_error(rec),
    )


def backlog(session: Session, tenant: Tenant, *, now: datetime, limit: int = 20) -> Backlog:
    """Counts over the partial index `ix_exception_records_backlog`, the next `limit`
    records by due time, and the oldest `limit` escalated records. "Due now" is the whole
    backlog past its due time, leased or not (due.past_due), not the narrower due and
    unclaimed the monitor counts: here it sits beside "leased"."""
    waiting = and_(R.tenant_id == tenant.id, in_backlog())
    counts = session.execute(
        select(
            func.count(),
            func.count().filter(past_due(now)),
            func.count().filter(R.enrichment_retry_count > 0),
            func.count().filter(leased(now)),
        ).where(waiting)
    ).one()
    escalated = session.scalar(select(func.count()).where(R.tenant_id == tenant.id, is_escalated()))
    recs = session.scalars(select(R).where(waiting).order_by(R.next_attempt_at).limit(limit))
    return Backlog(
        tenant=tenant.name,
        backlog_records=counts[0],
        due_now=counts[1],
        retrying=counts[2],
        leased=counts[3],
        escalated_records=escalated,
        next_up=[_backlog_item(r, now) for r in recs],
        escalated=escalations(session, tenant, limit=limit),
    )
