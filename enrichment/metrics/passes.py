"""The monitor's per-tenant aggregate passes: each a single indexed query whose metrics are
FILTER clauses (see `monitor` for the definitions and the indexes each pass reads)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, extract, func, literal, select
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import ColumnElement

from enrichment.core.due import due_unclaimed
from enrichment.core.models import (
    EXCEPTION,
    HUMAN,
    ORDER,
    RAISED_BY_AI,
    REOPENED,
    OutboxEvent,
    Tenant,
    in_backlog,
    in_review,
    is_escalated,
    review_waiting_since,
)
from enrichment.core.models import EnrichmentAttempt as A
from enrichment.core.models import ExceptionRecord as R
from enrichment.core.monitor_models import MetricSnapshot, SweepStat
from enrichment.core.outbox import DEAD, DELIVERED, PENDING, STOPPED
from enrichment.metrics import signin, spend_today

# The lead time's median rests on the tenant's latest attachments, at most this many.
LEAD_TIME_SAMPLE = 100
# Fixed confidence buckets: [0.0, 0.1), ..., [0.9, 1.0]; the last one includes 1.0.
BUCKET_EDGES: tuple[float, ...] = tuple(i / 10 for i in range(11))
WAITING_SINCE = review_waiting_since()


def bucket_label(i: int) -> str:
    return f"{BUCKET_EDGES[i]:.1f}-{BUCKET_EDGES[i + 1]:.1f}"


def seconds_between(session: Session, start: Any, end: Any) -> ColumnElement[float]:
    if session.bind.dialect.name == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * 86_400.0
    return extract("epoch", end - start)


def _count(cond: ColumnElement[bool]) -> Any:
    return func.count().filter(cond)


def _bucket_columns() -> list[Any]:
    cols = []
    for i in range(len(BUCKET_EDGES) - 1):
        low, high = BUCKET_EDGES[i], BUCKET_EDGES[i + 1]
        upper = R.ai_confidence <= high if i == len(BUCKET_EDGES) - 2 else R.ai_confidence < high
        cols.append(_count(and_(R.ai_confidence >= low, upper)).label(f"b{i}"))
    return cols


def record_counts(
    session: Session,
    tenant: Tenant,
    *,
    now: datetime,
    window_s: float,
    stuck_after_s: float,
    max_retries: int,
) -> dict[str, Any]:
    """One aggregate pass over one tenant's records: every record-based number at once."""
    since = now - timedelta(seconds=window_s)
    enriched_in_window = R.enriched_at >= since
    stmt = select(
        func.count().label("total"),
        _count(R.enriched_at.is_not(None)).label("enriched"),
        _count(in_backlog()).label("backlog"),
        _count(is_escalated()).label("escalated"),
        func.count(R.ai_confidence).label("classified"),
        _count(R.ai_confidence >= tenant.confidence_threshold).label("high_confidence"),
        _count(enriched_in_window).label("enriched_in_window"),
        func.avg(seconds_between(session, R.created_at, R.enriched_at))
        .filter(enriched_in_window)
        .label("time_to_enrich_s"),
        _count(
            and_(R.ai_confidence.is_(None), R.created_at < now - timedelta(seconds=stuck_after_s))
        ).label("stuck"),
        _count(R.enrichment_retry_count > max_retries).label("over_retry"),
        _count(in_review()).label("review_backlog"),
        func.min(WAITING_SINCE).filter(in_review()).label("oldest_review_at"),
        _count(R.decided_by == HUMAN).label("human_resolved"),
        *_bucket_columns(),
        *_order_columns(session, tenant.id, now),
    ).where(R.tenant_id == tenant.id, R.record_type == EXCEPTION)
    return dict(session.execute(stmt).one()._mapping)


def _order_columns(session: Session, tenant_id: int, now: datetime) -> list[Any]:
    """Orders as records, as scalar subqueries of the same statement (one round trip): open
    watches, orders analysed at least once (both on `ix_exception_records_watches`); the
    exceptions the order analysis raised, those a tenant's own exception attached to and the
    median lead time (all on `ix_exception_records_raised`). The partial indexes' predicates
    are rendered as literals, so the planner can match them."""
    W = aliased(R)  # not correlated with the pass's own rows

    def count(cond: ColumnElement[bool], name: str) -> Any:
        stmt = select(func.count()).select_from(W).where(W.tenant_id == tenant_id, cond)
        return stmt.scalar_subquery().label(name)

    watch = W.record_type == literal(ORDER, literal_execute=True)
    raised = W.source == literal(RAISED_BY_AI, literal_execute=True)
    return [
        count(and_(watch, W.enriched_at.is_(None), W.escalated_at.is_(None)), "orders_watched"),
        count(and_(watch, W.ai_analysis.is_not(None)), "orders_analysed"),
        count(raised, "problems_raised"),
        count(and_(raised, W.attached_at.is_not(None)), "problems_attached"),
        lead_time_median(session, tenant_id, now).label("lead_time_median_s"),
    ]


def lead_time_median(session: Session, tenant_id: int, now: datetime) -> Any:
    """The median lead time (s) of the tenant's latest LEAD_TIME_SAMPLE attachments: from the
    order analysis raising a problem (created_at) to the tenant's own exception for it
    attaching (attached_at); NULL before any. The sample is a backward range scan of
    `ix_exception_records_raised`, cut by its LIMIT whatever the tenant's history; its median
    is the mean of its middle one or two values (portable SQL: SQLite has no percentile)."""
    W = aliased(R)
    sample = (
        select(seconds_between(session, W.created_at, W.attached_at).label("lead"))
        .where(
            W.tenant_id == tenant_id,
            W.source == literal(RAISED_BY_AI, literal_execute=True),
            W.attached_at.is_not(None),
            W.attached_at <= now,
        )
        .order_by(W.attached_at.desc())
        .limit(LEAD_TIME_SAMPLE)
        .cte("lead_sample")  # read once, though named three times below
    )
    n = select(func.count()).select_from(sample).scalar_subquery()
    skip = case((n > 1, (n - 1) // 2), else_=0)  # integer division, never below 0
    middle = select(sample.c.lead).order_by(sample.c.lead).limit(2 - n % 2).offset(skip)
    middle = middle.subquery()
    return select(func.avg(middle.c.lead)).scalar_subquery()


def attempt_counts(
    session: Session, tenant_id: int, *, now: datetime, window_s: float, since_prev: datetime | None
) -> dict[str, Any]:
    """One aggregate over one tenant's attempts: the window's numbers and the delta since the
    previous snapshot (for the cumulative counters), in a single indexed range scan."""
    window_start = now - timedelta(seconds=window_s)
    midnight = spend_today.midnight(now)
    in_window = A.created_at > window_start
    in_delta = A.created_at > since_prev if since_prev else literal(True)
    failed = A.outcome == "failed"
    stmt = select(
        _count(in_window).label("attempts"),
        _count(and_(in_window, failed)).label("failed"),
        func.coalesce(func.sum(A.latency_s).filter(in_window), 0.0).label("latency_s"),
        func.coalesce(func.sum(A.cost_usd).filter(in_window), 0.0).label("cost_usd"),
        func.coalesce(func.sum(A.cost_usd).filter(in_window, A.batch_id.is_not(None)), 0.0).label(
            "batch_cost_usd"
        ),
        func.coalesce(func.sum(A.cache_read_tokens).filter(in_window), 0).label("cached"),
        func.coalesce(
            func.sum(A.input_tokens + A.cache_write_tokens + A.cache_read_tokens).filter(in_window),
            0,
        ).label("input_all"),
        func.count(A.record_id.distinct()).filter(in_window).label("records"),
        func.count(A.lease_token.distinct()).filter(in_window).label("chains"),
        func.count(A.lease_token.distinct()).filter(and_(in_window, failed)).label("bad_chains"),
        _count(in_delta).label("d_attempts"),
        _count(and_(in_delta, failed)).label("d_failed"),
        func.coalesce(func.sum(A.latency_s).filter(in_delta), 0.0).label("d_latency_s"),
        func.coalesce(func.sum(A.cost_usd).filter(in_delta), 0.0).label("d_cost"),
        # Read whole only when today's spend is not carried from the previous snapshot.
        func.coalesce(func.sum(A.cost_usd).filter(A.created_at >= midnight), 0.0).label("today"),
    ).where(A.tenant_id == tenant_id, A.created_at <= now, A.outcome != REOPENED)
    if since_prev:
        stmt = stmt.where(A.created_at >= spend_today.scan_from(window_start, since_prev, now))
    return dict(session.execute(stmt).one()._mapping)


def due_counts(
    session: Session, tenant_id: int, *, now: datetime, max_retries: int
) -> dict[str, Any]:
    """The records due now and not being worked on (what starves), with the last sweep's
    share of the tenant from `sweep_stats` (two primary-key lookups in the same statement)."""
    sweep = select(SweepStat.due, SweepStat.claimed).where(SweepStat.tenant_id == tenant_id)
    stmt = select(
        func.count().label("due"),
        func.min(R.next_attempt_at).label("oldest_due_at"),
        sweep.with_only_columns(SweepStat.due).scalar_subquery().label("sweep_due"),
        sweep.with_only_columns(SweepStat.claimed).scalar_subquery().label("sweep_claimed"),
    ).where(R.tenant_id == tenant_id, due_unclaimed(now, max_retries))
    return dict(session.execute(stmt).one()._mapping)


def event_counts(session: Session, tenant_id: int, *, now: datetime) -> dict[str, int]:
    """The tenant's outbox events waiting for delivery, refused (stopped) and given up on
    (dead) (partial index), and its wrong reviewer keys of the last 5 min (in the same
    round trip)."""
    E = OutboxEvent
    stmt = select(
        _count(E.status == PENDING).label("undelivered"),
        _count(E.status == STOPPED).label("stopped"),
        _count(E.status == DEAD).label("dead"),
        signin.recent(tenant_id, now=now).label("signin_refusals"),
    ).where(E.tenant_id == tenant_id, E.status != DELIVERED)
    return dict(session.execute(stmt).one()._mapping)


def snapshot_within(session: Session, tenant_id: int, now: datetime, gap_s: float) -> bool:
    if gap_s <= 0:
        return False
    # No `taken_at < now` bound here: a concurrent run that computed its `now` a moment later
    # may have committed a snapshot stamped after ours, and that one counts too.
    since = now - timedelta(seconds=gap_s)
    return (
        session.scalar(
            select(MetricSnapshot.id)
            .where(MetricSnapshot.tenant_id == tenant_id, MetricSnapshot.taken_at > since)
            .limit(1)
        )
        is not None
    )


def previous_snapshot(session: Session, tenant_id: int, now: datetime) -> MetricSnapshot | None:
    return session.scalar(
        select(MetricSnapshot)
        .where(MetricSnapshot.tenant_id == tenant_id, MetricSnapshot.taken_at < now)
        .order_by(MetricSnapshot.taken_at.desc())
        .limit(1)
    )
