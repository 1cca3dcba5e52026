"""A tenant's backlog (GET /api/enrichment/backlog/{tenant}): its counts, the records due
next, and the oldest escalated ones."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from enrichment.core import tallies
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
    """The counts (`counts`), the next `limit` records by due time, and the oldest `limit`
    escalated records. "Due now" is the whole backlog past its due time, leased or not
    (due.past_due), not the narrower due and unclaimed the monitor counts: here it sits
    beside "leased"."""
    waiting = and_(R.tenant_id == tenant.id, in_backlog())
    total, due_now, retrying, held, escalated = counts(session, tenant.id, now)
    # The ids first: an index-only scan of ix_exception_records_backlog (a whole-row query let
    # the planner walk idx_enrichment_due through other tenants' rows), then those rows.
    ids = session.scalars(select(R.id).where(waiting).order_by(R.next_attempt_at).limit(limit))
    recs = session.scalars(select(R).where(R.id.in_(list(ids))).order_by(R.next_attempt_at))
    return Backlog(
        tenant=tenant.name,
        backlog_records=total,
        due_now=due_now,
        retrying=retrying,
        leased=held,
        escalated_records=escalated,
        next_up=[_backlog_item(r, now) for r in recs],
        escalated=escalations(session, tenant, limit=limit),
    )


def counts(session: Session, tenant_id: int, now: datetime) -> tuple[int, int, int, int, int]:
    """(backlog, due now, retrying, leased, escalated), every record type. On PostgreSQL the
    totals come from the monitor's tallies and only the time-bound counts read records: those
    due (a range of `ix_exception_records_backlog`) and those leased (`..._leased`; a live
    lease always has its token, leases.py); elsewhere (`scanned_counts`) one pass over the
    backlog index."""
    if not tallies.kept(session):
        return scanned_counts(session, tenant_id, now)
    rows = tallies.tally_rows(session, tenant_id)
    waits = [r for r in rows if not r.enriched and not r.escalated]
    waiting = and_(R.tenant_id == tenant_id, in_backlog())
    due_now, held = session.execute(
        select(
            select(func.count()).where(waiting, past_due(now)).scalar_subquery(),
            select(func.count())
            .where(waiting, R.lease_token.is_not(None), leased(now))
            .scalar_subquery(),
        )
    ).one()
    escalated = tallies.count(rows, lambda r: r.escalated and not r.reviewed)
    retrying = tallies.count(waits, lambda r: r.retries > 0)
    return tallies.count(waits), due_now, retrying, held, escalated


def scanned_counts(session: Session, tenant_id: int, now: datetime) -> tuple[int, ...]:
    """`counts` from the records themselves (SQLite; on PostgreSQL the tests' oracle)."""
    waiting = and_(R.tenant_id == tenant_id, in_backlog())
    row = session.execute(
        select(
            func.count(),
            func.count().filter(past_due(now)),
            func.count().filter(R.enrichment_retry_count > 0),
            func.count().filter(leased(now)),
        ).where(waiting)
    ).one()
    escalated = session.scalar(select(func.count()).where(R.tenant_id == tenant_id, is_escalated()))
    return (*row, escalated)
