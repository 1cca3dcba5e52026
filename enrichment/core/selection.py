"""The claim itself: sizing a sweep and leasing the records it takes, in one statement.

The claim in four modules: due (the words) -> scheduling (the pure rules) -> demand (each
tenant's inputs, read) -> selection (the claim itself, the one entry point).

Which records need enrichment, and claiming them under a lease: fairly across tenants,
in priority order within each, and no more than the fleet can start soon.

Why the broker never holds a long countdown: with Redis, a message not acked within
`visibility_timeout` (1 h by default) is handed to another worker, and ETA messages sit
unacked in worker memory. A 1 h or 4 h countdown would therefore run twice, or in a loop.
So the long waits live in `next_attempt_at`; the sweep only claims records due within
`sweep_horizon_s` (6 min by default: the 5 min step plus its jitter) and enqueues them
with `countdown = next_attempt_at - now`, so every countdown the broker holds is shorter
than the horizon.

Why the database, not the broker, decides the order: a broker queue is FIFO and blind to
tenants. Fill it deep and whatever was enqueued first runs first: one tenant's import of
50,000 records holds every other tenant's critical record behind it for hours, a raised
priority or a new budget cannot reach messages already queued, and a broker loss drops
them all at once. So the queue stays shallow: a sweep claims only what the fleet starts in
about one sweep interval (`sweep_for_fleet`: recent throughput x interval x headroom, less
what is in flight; scheduling.sweep_size), and every claim decides afresh, in one
statement, who goes next: each tenant's share of the batch by weight (demand.py and
scheduling.fair_shares), within its in-flight cap and its daily budget, and within a
tenant the earliest `sched_at` (severity, priority, due time, with aging).
ENRICHMENT_CLAIM_ORDER=fifo keeps the old order instead: due time only, across tenants.

Every claim upserts `sweep_stats` (due and claimed per tenant it considered), so a starved
tenant shows on the monitor. What "due", "in flight" and throughput mean is in due.py.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import Select, case, func, select, true, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from enrichment.core import breaker, breaker_store, demand, scheduling
from enrichment.core.due import chain_lease_s, claimable, fleet_load, unleased, unnest
from enrichment.core.leases import released
from enrichment.core.models import ExceptionRecord as R
from enrichment.core.models import utcnow
from enrichment.core.settings import Settings


@dataclass(frozen=True)
class Claim:
    record_id: int
    lease_token: str
    countdown_s: float


@dataclass(frozen=True)
class ClaimReport:
    """A claim and how it was divided: the batch asked for, and per tenant considered what
    was due (up to the claim's size) and what it got."""

    claims: list[Claim]
    size: int
    due: dict[int, int] = field(default_factory=dict)
    claimed: dict[int, int] = field(default_factory=dict)


def claim_due(
    session: Session,
    settings: Settings,
    *,
    tenant_id: int | None = None,
    now: datetime | None = None,
) -> list[Claim]:
    """Claim up to `sweep_batch_size` due records, shared fairly, and return their countdowns.

    The API's process route and one-off callers use this; beat's sweep sizes its batch to
    the fleet first (`sweep_for_fleet`)."""
    report = claim(session, settings, settings.sweep_batch_size, tenant_id=tenant_id, now=now)
    return report.claims


def sweep_for_fleet(
    session: Session,
    settings: Settings,
    *,
    tenant_id: int | None = None,
    now: datetime | None = None,
) -> ClaimReport:
    """One sweep's claim: as many records as the fleet starts in about one sweep interval
    (scheduling.sweep_size, from due.fleet_load), never more than `sweep_batch_size`.

    The provider's breaker comes first (core/breaker.py): while it is open, the sweep claims
    nothing but one probe record per probe interval (unless it is open for an overload and
    a fallback model takes the work: then the first record claimed is the primary's probe);
    after it closes, the claim ramps up from `sweep_min_batch`, doubling every interval."""
    now = now or utcnow()
    key = breaker_store.key_for(settings)
    conn = session.connection()
    gate = breaker_store.load(conn, key)
    fallback = not gate.is_closed and breaker_store.fallback_open(conn, settings, gate)
    if not gate.is_closed and not fallback:
        return _probe(session, settings, key, tenant_id, now)
    load = fleet_load(session, settings, now)
    size = scheduling.sweep_size(
        load.completed_stages,
        load.in_chains,
        window_s=load.window_s,
        interval_s=settings.sweep_interval_s,
        headroom=settings.sweep_headroom,
        floor=settings.sweep_min_batch,
        ceiling=settings.sweep_batch_size,
    )
    ramp = breaker.ramp_limit(gate, now, settings.sweep_interval_s, settings.sweep_min_batch)
    size = size if ramp is None else min(size, ramp)
    report = claim(session, settings, size, tenant_id=tenant_id, now=now)
    if fallback and report.claims:  # the fallback takes the work; the primary, its probe
        _take_probe(conn, key, report.claims[0].record_id, now)
    return report


def _probe(
    session: Session,
    settings: Settings,
    key: tuple[str, str],
    tenant_id: int | None,
    now: datetime,
) -> ClaimReport:
    """While the breaker is open: one record, when a probe is due, made the breaker's probe
    in this claim's transaction (the row lock: two sweeps never take two probes). Any
    tenant's record will do, one whose records all go by Message Batch too (else a fleet of
    batch tenants would never probe), and it runs at once, whatever its countdown."""
    conn = session.connection()
    current = breaker_store.load(conn, key, lock=True)
    if breaker.take_probe(current, 0, now) is None:
        return ClaimReport([], 0)
    lease_s = chain_lease_s(settings)
    report = claim(session, settings, 1, tenant_id=tenant_id, now=now, lease_s=lease_s)
    if not report.claims:
        return report
    probe = replace(report.claims[0], countdown_s=0.0)
    breaker_store.store(conn, current, breaker.take_probe(current, probe.record_id, now))
    return replace(report, claims=[probe])


def _take_probe(conn, key: tuple[str, str], record_id: int, now: datetime) -> None:
    current = breaker_store.load(conn, key, lock=True)
    taken = breaker.take_probe(current, record_id, now)
    if taken is not None:
        breaker_store.store(conn, current, taken)


def claim(
    session: Session,
    settings: Settings,
    size: int,
    *,
    tenant_id: int | None = None,
    now: datetime | None = None,
    lease_s: float | None = None,
) -> ClaimReport:
    """Claim up to `size` due records in one statement, divided among the tenants with due
    work by weight, within their in-flight caps and daily budgets; record the division.
    The lease lasts the horizon plus the lease TTL; for a Message Batch's claim,
    `lease_s` (and a tenant whose records all go by Message Batch takes part)."""
    now = now or utcnow()
    if settings.claim_order == "fifo":
        tenants = demand.tenants_due(session, settings, now, size, tenant_id)
        pick = _pick_fifo(settings, size, now, [t.tenant_id for t in tenants if t.due])
    else:
        tenants, shares = demand.divide(
            session, settings, size, now, tenant_id, for_message_batch=lease_s is not None
        )
        pick = _pick(session, settings, shares, now) if any(shares.values()) else None
    token = str(uuid.uuid4())
    lease_until = now + timedelta(seconds=lease_s or chain_lease_s(settings))
    rows = _claim(session, pick, token, lease_until, now) if pick is not None else []
    got = Counter(tenant for _, tenant, _ in rows)
    due = {t.tenant_id: t.due for t in tenants}
    claimed = {t: got.get(t, 0) for t in due}
    demand.record_stats(session, due, claimed, now)
    claims = [
        Claim(rid, token, max(0.0, (next_at - now).total_seconds()))
        for rid, _, next_at in sorted(rows, key=lambda r: r[2])
    ]
    return ClaimReport(claims, size, due, claimed)


def _claim(
    session: Session, pick: Select, token: str, lease_until: datetime, now: datetime
) -> list[tuple[int, int, datetime]]:
    """Lease the picked records in one UPDATE; returns (record id, tenant id,
    next_attempt_at) of the records it leased."""
    stmt = (
        update(R)
        .where(_id_in(session, pick))
        .where(unleased(now))
        # updated_at is kept: a claim is not a change of content.
        .values(lease_token=token, lease_expires_at=lease_until, updated_at=R.updated_at)
        .returning(R.id, R.tenant_id, R.next_attempt_at)
        .execution_options(synchronize_session=False)
    )
    return [tuple(row) for row in session.execute(stmt)]


def _pick(session: Session, settings: Settings, shares: dict[int, int], now: datetime) -> Select:
    """Each tenant's first `share` claimable records, by sched_at."""
    shares = {t: n for t, n in shares.items() if n > 0}
    if session.get_bind().dialect.name == "postgresql":
        return _pick_pg(settings, shares, now)
    return _pick_sqlite(settings, shares, now)


def _pick_fifo(settings: Settings, size: int, now: datetime, tenant_ids: list[int]) -> Select:
    """ENRICHMENT_CLAIM_ORDER=fifo: the first `size` claimable records by due time, across
    the tenants with due work (no shares, caps or budgets)."""
    pick = select(R.id).where(claimable(now, settings), R.tenant_id.in_(tenant_ids))
    return pick.order_by(R.next_attempt_at).limit(size).with_for_update(skip_locked=True)


def _pick_pg(settings: Settings, shares: dict[int, int], now: datetime) -> Select:
    """(tenant, share) pairs, unnested from two array parameters, joined to a LATERAL walk
    of that tenant's index with LIMIT share. Arrays, not a VALUES list: the statement keeps
    one shape whatever the tenants, so SQLAlchemy compiles it once (docs/benchmarks.md, P3).
    `FOR UPDATE SKIP LOCKED` inside the walk: two concurrent sweeps skip each other's rows
    instead of waiting or claiming twice (a skipped row just waits for the next claim)."""
    wanted = unnest(tenant_id=list(shares), share=list(shares.values()))
    walk = (
        select(R.id)
        .where(R.tenant_id == wanted.c.tenant_id, claimable(now, settings))
        .order_by(R.sched_at)
        .limit(wanted.c.share)
        .with_for_update(skip_locked=True, of=R)
        .lateral("walk")
    )
    return select(walk.c.id).select_from(wanted).join(walk, true())


def _pick_sqlite(settings: Settings, shares: dict[int, int], now: datetime) -> Select:
    """The same choice for SQLite (one writer at a time, so no locking clause): rank each
    tenant's claimable records by sched_at and keep the first `share`."""
    rank = func.row_number().over(partition_by=R.tenant_id, order_by=(R.sched_at, R.id))
    ranked = (
        select(R.id, R.tenant_id, rank.label("rank"))
        .where(R.tenant_id.in_(list(shares)), claimable(now, settings))
        .subquery("ranked")
    )
    limit = case(shares, value=ranked.c.tenant_id, else_=0)
    return select(ranked.c.id).where(ranked.c.rank <= limit)


def _id_in(session: Session, pick: Select) -> ColumnElement[bool]:
    """`id = ANY(ARRAY(pick))` on PostgreSQL: the picked ids become one array and the UPDATE
    reads them through the primary key. With `id IN (pick)` the planner may hash-join the
    pick against a sequential scan of the whole table (docs/benchmarks.md, P3)."""
    if session.get_bind().dialect.name == "postgresql":
        return R.id == func.any(func.array(pick.scalar_subquery()))
    return R.id.in_(pick.scalar_subquery())


def requeue(session: Session, tenant_id: int, *, record_id: int | None = None) -> int:
    """Reset escalated or failed records of one tenant (or its record `record_id`) so the
    next sweep claims them now; how many (see `requeue_ids`)."""
    ids = None if record_id is None else [record_id]
    return len(requeue_ids(session, tenant_id, record_ids=ids))


def requeue_ids(
    session: Session, tenant_id: int, *, record_ids: Collection[int] | None = None
) -> list[int]:
    """Reset escalated or failed records of one tenant (all, or those of `record_ids`) so
    the next sweep claims them now.

    COMPLETED stages stay COMPLETED (a requeue does not pay for them again), a record a
    chain is working on right now (an unexpired lease) is left to that chain, and a record a
    person has decided stays decided.
    Returns the ids of the records reset.
    """
    now = utcnow()
    stmt = (
        update(R)
        .where(R.tenant_id == tenant_id, R.enriched_at.is_(None), R.reviewed_at.is_(None))
        .where(unleased(now))
        .values(
            escalated_at=None,
            escalation_reason=None,
            enrichment_retry_count=0,
            next_attempt_at=now,
            **released(),
        )
        .execution_options(synchronize_session=False)
    )
    if record_ids is not None:
        stmt = stmt.where(R.id.in_(list(record_ids)))
    return list(session.scalars(stmt.returning(R.id)))
