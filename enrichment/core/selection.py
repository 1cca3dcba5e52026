"""Which records need enrichment, and claiming them under a lease.

Why the broker never holds a long countdown: with Redis, a message not acked within
`visibility_timeout` (1 h by default) is handed to another worker, and ETA messages sit
unacked in worker memory. A 1 h or 4 h countdown would therefore run twice, or in a loop.
So the long waits live in `next_attempt_at`; the sweep only claims records due within
`sweep_horizon_s` (6 min by default: the 5 min step plus its jitter) and enqueues them
with `countdown = next_attempt_at - now`, so every countdown the broker holds is shorter
than the horizon.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, and_, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from enrichment.core.models import ExceptionRecord as R
from enrichment.core.models import in_backlog, utcnow
from enrichment.core.settings import Settings


@dataclass(frozen=True)
class Claim:
    record_id: int
    lease_token: str
    countdown_s: float


def claimable(now: datetime, settings: Settings) -> ColumnElement[bool]:
    """Needs enrichment, has retries left, is due within the horizon and is not leased.

    "Needs enrichment" is the seed's reprocessing query: no label or confidence yet, or a
    confidence below the tenant's threshold (a recheck), plus a confident record whose resolve
    has not finished (else a resolve failure would never be retried). Together that is every
    record in the backlog. *When* is `next_attempt_at`'s business, as for every wait: after a
    low-confidence answer the pipeline sets it to the seed's "not updated for 24 hours"
    (ENRICHMENT_LOW_CONFIDENCE_RECHECK_S), and a requeue sets it to now."""
    return and_(
        in_backlog(),
        R.enrichment_retry_count <= settings.max_retries,
        R.next_attempt_at <= now + timedelta(seconds=settings.sweep_horizon_s),
        or_(R.lease_expires_at.is_(None), R.lease_expires_at < now),
    )


def claim_due(
    session: Session,
    settings: Settings,
    *,
    tenant_id: int | None = None,
    now: datetime | None = None,
) -> list[Claim]:
    """Claim up to `sweep_batch_size` due records in one statement and return their countdowns.

    The inner SELECT takes `FOR UPDATE SKIP LOCKED` on PostgreSQL, so two concurrent sweeps
    (two beats) skip each other's rows instead of waiting or claiming twice; SQLite ignores
    it and serialises writers, and the outer UPDATE re-checks the lease either way.
    """
    now = now or utcnow()
    pick = (
        select(R.id)
        .where(claimable(now, settings))
        .order_by(R.next_attempt_at)
        .limit(settings.sweep_batch_size)
        .with_for_update(skip_locked=True, of=R)
    )
    if tenant_id is not None:
        pick = pick.where(R.tenant_id == tenant_id)
    token = str(uuid.uuid4())
    lease_until = now + timedelta(seconds=settings.sweep_horizon_s + settings.lease_ttl_s)
    stmt = (
        update(R)
        .where(_id_in(session, pick))
        .where(or_(R.lease_expires_at.is_(None), R.lease_expires_at < now))
        # updated_at is kept: a claim is not a change of content.
        .values(lease_token=token, lease_expires_at=lease_until, updated_at=R.updated_at)
        .returning(R.id, R.next_attempt_at)
        .execution_options(synchronize_session=False)
    )
    rows = session.execute(stmt).all()
    return [
        Claim(rid, token, max(0.0, (due - now).total_seconds()))
        for rid, due in sorted(rows, key=lambda r: r[1])
    ]


def _id_in(session: Session, pick: Select) -> ColumnElement[bool]:
    """`id = ANY(ARRAY(pick))` on PostgreSQL: the picked ids become one array and the UPDATE
    reads them through the primary key. With `id IN (pick)` the planner may hash-join the
    pick against a sequential scan of the whole table (docs/benchmarks.md, P3)."""
    if session.get_bind().dialect.name == "postgresql":
        return R.id == func.any(func.array(pick.scalar_subquery()))
    return R.id.in_(pick.scalar_subquery())


def requeue(session: Session, tenant_id: int, *, record_id: int | None = None) -> int:
    """Reset escalated or failed records of one tenant so the next sweep claims them now.

    COMPLETED stages stay COMPLETED (a requeue does not pay for them again), a record a
    chain is working on right now (an unexpired lease) is left to that chain, and a record a
    person has decided stays decided.
    Returns how many records were reset.
    """
    now = utcnow()
    stmt = (
        update(R)
        .where(R.tenant_id == tenant_id, R.enriched_at.is_(None), R.reviewed_at.is_(None))
        .where(or_(R.lease_expires_at.is_(None), R.lease_expires_at < now))
        .values(
            escalated_at=None,
            escalation_reason=None,
            enrichment_retry_count=0,
            next_attempt_at=now,
            lease_token=None,
            lease_expires_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    if record_id is not None:
        stmt = stmt.where(R.id == record_id)
    return session.execute(stmt).rowcount
