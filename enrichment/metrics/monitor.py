"""Per-tenant enrichment metrics, written as one `metric_snapshots` row per evaluation.

Cost at scale: per tenant, seven indexed queries - the previous snapshot (index
`ix_metric_snapshots_tenant_taken`); the tenant's record counts (on PostgreSQL its tallies,
kept as records change, and one statement of reads each bounded by a window: `tallied`; on
SQLite one aggregate pass over the tenant's records: `passes.record_counts`); one aggregate
over the tenant's attempts since the earliest of the window start, the previous snapshot and
00:00 UTC today (`ix_enrichment_attempts_tenant_created`); the open outbox events
(`ix_outbox_events_open`); the records due now with the last sweep's share
(`ix_exception_records_backlog`); the audit window (`drift`, `ix_reviews_tenant_created`);
and the insert.

Definitions (percentages 0-100, durations in seconds, "window" = `window_s` before `now`):
- completeness_pct: enriched_at IS NOT NULL / all records.
- backlog_records: enriched_at IS NULL AND escalated_at IS NULL.
- high_confidence_pct: ai_confidence >= the tenant's threshold / records with a confidence.
- failure_rate_pct: window attempts with outcome "failed" / window attempts.
- pipeline_success_pct: window chains (one lease token = one chain run) with no failed
  attempt / window chains. A chain that ends in a low-confidence release ran to its end.
- records_per_hour: records enriched in the window / window hours.
- processing_duration_s: AI time spent in the window (sum of attempt latency_s).
- avg_processing_time_s: processing_duration_s / distinct records attempted in the window.
- time_to_enrich_s: mean created_at -> enriched_at of records enriched in the window.
- quality_score: see `quality_score`.
- undelivered_events / stopped_events / dead_events: the tenant's outbox events now pending /
  refused by the receiver (a 4xx: a person must look) / given up on.
- review_backlog: records in the review queue (`in_review()`: escalated or audit-sampled,
  not reviewed); oldest_review_age_s: how long its oldest item has waited (since its
  escalation, or its resolution for an audit item; None when the queue is empty);
  human_resolved_records: records a person decided (decided_by "human").
- due_records: backlog records due now (next_attempt_at <= now), not leased (or the lease
  expired), retries left: the claim's "claimable" without the horizon; oldest_due_age_s:
  now - the earliest next_attempt_at among them (None when there is none).
- last_sweep_due / last_sweep_claimed: the tenant's `sweep_stats` row (0 before any sweep).
- spend_today_usd: the tenant's attempts' cost_usd since 00:00 UTC today (carried from the
  previous snapshot when it was taken today: `spend_today`).
- orders_watched / orders_analysed / problems_raised: watched orders (record_type "order")
  not closed, those analysed at least once, and exceptions the order analysis raised; the
  other record counts are of exceptions only (the records pass, its scalar subqueries).
- problems_attached: raised exceptions a tenant's own exception later attached to (all time,
  like problems_raised: attached / raised is the share of raised problems the tenant's own
  systems confirmed). lead_time_median_s: the median of created_at -> attached_at over the
  latest LEAD_TIME_SAMPLE (100) attachments: how long before the tenant's own exception the
  fleet had raised it (None before any). The latest N, not a time window: a tenant's own
  exception comes hours or days after the fleet's, so a window of the monitor's hour would be
  empty most of the time, and all time would hide a change in the analysis under its history.
- auto_reviews, auto_error_pct (low, high): the weighted error rate of automated decisions
  over the rolling window of audit reviews, with its 95 % interval (`drift`; one more query).
Audit rows of a reopened record (outcome "reopened") are not attempts: no stage ran.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from enrichment.core import tallies
from enrichment.core.models import Tenant, utcnow
from enrichment.core.monitor_models import MetricSnapshot
from enrichment.core.settings import MonitorConfig, Settings
from enrichment.core.tenant_settings import TenantSettings
from enrichment.metrics import cadence, drift, spend_today, tallied
from enrichment.metrics.passes import (
    BUCKET_EDGES,
    attempt_counts,
    bucket_label,
    due_counts,
    event_counts,
    previous_snapshot,
    record_counts,
    snapshot_within,
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """What one evaluation measured for one tenant (the `metric_snapshots` columns + names)."""

    tenant: str
    tenant_id: int
    taken_at: datetime
    window_s: float
    total_records: int
    enriched_records: int
    backlog_records: int
    escalated_records: int
    classified_records: int
    high_confidence_records: int
    completeness_pct: float | None
    high_confidence_pct: float | None
    quality_score: float | None
    failure_rate_pct: float | None
    pipeline_success_pct: float | None
    records_per_hour: float
    avg_processing_time_s: float | None
    processing_duration_s: float
    time_to_enrich_s: float | None
    window_attempts: int
    window_failed_attempts: int
    window_chains: int
    window_ai_cost_usd: float
    # Of it, through Message Batches (the rest: interactive calls).
    window_batch_ai_cost_usd: float
    # Cached input tokens over all input tokens, in the window (None: no tokens).
    cache_hit_pct: float | None
    attempts_total: int
    failed_attempts_total: int
    ai_cost_usd_total: float
    processing_seconds_total: float
    confidence_buckets: dict[str, int]
    integrity: dict[str, Any]
    undelivered_events: int = 0
    stopped_events: int = 0
    dead_events: int = 0
    review_backlog: int = 0
    oldest_review_age_s: float | None = None
    human_resolved_records: int = 0
    oldest_due_age_s: float | None = None
    due_records: int = 0
    last_sweep_due: int = 0
    last_sweep_claimed: int = 0
    spend_today_usd: float = 0.0
    signin_refusals: int = 0
    # Orders as records: open watches, orders analysed, problems raised (passes.py).
    orders_watched: int = 0
    orders_analysed: int = 0
    problems_raised: int = 0
    # Raised problems a tenant's own exception attached to, and the median lead time (s).
    problems_attached: int = 0
    lead_time_median_s: float | None = None
    # The error rate of automated decisions over the audit window (metrics/drift.py), %.
    auto_reviews: int = 0
    auto_error_pct: float | None = None
    auto_error_low_pct: float | None = None
    auto_error_high_pct: float | None = None
    id: int | None = None

    def to_row(self) -> MetricSnapshot:
        data = asdict(self)
        data.pop("tenant")
        return MetricSnapshot(**data)

    @classmethod
    def from_row(cls, row: MetricSnapshot, tenant: str) -> Snapshot:
        names = [f.name for f in fields(cls) if f.name != "tenant"]
        return cls(tenant=tenant, **{n: getattr(row, n) for n in names})


def pct(part: float, whole: float) -> float | None:
    """part / whole in percent, or None when there is nothing to divide (no data, not 0)."""
    return None if not whole else 100.0 * part / whole


def quality_score(
    high_confidence_pct: float | None,
    completeness_pct: float | None,
    failure_rate_pct: float | None,
    config: MonitorConfig,
) -> float | None:
    """Quality 0-100: the weighted mean of the measured parts, each a percentage.

    Parts: high-confidence rate (weight_high_confidence), completeness (weight_completeness)
    and attempt success rate = 100 - failure rate (weight_attempt_success). A part with no
    data (None) is left out and the weights of the others are renormalised; with no part
    measured, or all weights 0, the score is None ("no data", distinct from a bad score).
    """
    success = None if failure_rate_pct is None else 100.0 - failure_rate_pct
    parts = [
        (high_confidence_pct, config.weight_high_confidence),
        (completeness_pct, config.weight_completeness),
        (success, config.weight_attempt_success),
    ]
    measured = [(v, w) for v, w in parts if v is not None and w > 0]
    total_w = sum(w for _, w in measured)
    return sum(v * w for v, w in measured) / total_w if total_w else None


def integrity_checks(
    rc: dict[str, Any], high_confidence_pct: float | None, config: MonitorConfig
) -> dict[str, Any]:
    """The seed's three data-integrity checks, each {"value", "target", "ok"}.

    ok is None when there is no data to judge (no classified record yet).
    """
    target = config.high_confidence_target_pct
    return {
        "stuck_null_over_1d": {"value": rc["stuck"], "target": 0, "ok": rc["stuck"] == 0},
        "high_confidence_rate": {
            "value": high_confidence_pct,
            "target": target,
            "ok": None if high_confidence_pct is None else high_confidence_pct >= target,
        },
        "retry_count_above_max": {
            "value": rc["over_retry"],
            "target": 0,
            "ok": rc["over_retry"] == 0,
        },
    }


def measure(
    session: Session,
    tenant: Tenant,
    settings: Settings,
    config: MonitorConfig,
    *,
    now: datetime,
) -> Snapshot:
    """Compute one tenant's snapshot without writing it (the API's live health uses this)."""
    prev = previous_snapshot(session, tenant.id, now)
    counts = tallied.record_counts if tallies.kept(session) else record_counts
    rc = counts(
        session,
        tenant,
        now=now,
        window_s=config.window_s,
        stuck_after_s=config.stuck_after_s,
        max_retries=settings.max_retries,
    )
    ac = attempt_counts(
        session, tenant.id, now=now, window_s=config.window_s, since_prev=prev and prev.taken_at
    )
    ec = event_counts(session, tenant.id, now=now)
    ec.update(due_counts(session, tenant.id, now=now, max_retries=settings.max_retries))
    snap = _assemble(tenant, rc, ac, ec, prev, config, now)
    return replace(snap, **asdict(_drift(session, tenant, settings, now)))


def _drift(session: Session, tenant: Tenant, settings: Settings, now: datetime):
    own, reviews = TenantSettings.parse(tenant.settings), settings.reviews
    return drift.auto_error(
        session,
        tenant.id,
        now=now,
        window_reviews=reviews.drift_window_reviews,
        window_s=reviews.drift_window_s,
        audit_rate=reviews.audit_rate if own.audit_rate is None else own.audit_rate,
    )


def _assemble(
    tenant: Tenant,
    rc: dict[str, Any],
    ac: dict[str, Any],
    ec: dict[str, Any],
    prev: MetricSnapshot | None,
    config: MonitorConfig,
    now: datetime,
) -> Snapshot:
    """The snapshot from the passes: rc records, ac attempts, ec events and due records."""
    completeness = pct(rc["enriched"], rc["total"])
    high_conf = pct(rc["high_confidence"], rc["classified"])
    failure = pct(ac["failed"], ac["attempts"])
    return Snapshot(
        tenant=tenant.name,
        tenant_id=tenant.id,
        taken_at=now,
        window_s=config.window_s,
        total_records=rc["total"],
        enriched_records=rc["enriched"],
        backlog_records=rc["backlog"],
        escalated_records=rc["escalated"],
        classified_records=rc["classified"],
        high_confidence_records=rc["high_confidence"],
        completeness_pct=completeness,
        high_confidence_pct=high_conf,
        quality_score=quality_score(high_conf, completeness, failure, config),
        failure_rate_pct=failure,
        pipeline_success_pct=pct(ac["chains"] - ac["bad_chains"], ac["chains"]),
        records_per_hour=rc["enriched_in_window"] * 3600.0 / config.window_s,
        avg_processing_time_s=ac["latency_s"] / ac["records"] if ac["records"] else None,
        processing_duration_s=float(ac["latency_s"]),
        time_to_enrich_s=_float_or_none(rc["time_to_enrich_s"]),
        window_attempts=ac["attempts"],
        window_failed_attempts=ac["failed"],
        window_chains=ac["chains"],
        window_ai_cost_usd=float(ac["cost_usd"]),
        window_batch_ai_cost_usd=float(ac["batch_cost_usd"]),
        cache_hit_pct=pct(ac["cached"], ac["input_all"]),
        **_totals(prev, ac),
        confidence_buckets={bucket_label(i): rc[f"b{i}"] for i in range(len(BUCKET_EDGES) - 1)},
        integrity=integrity_checks(rc, high_conf, config),
        undelivered_events=ec["undelivered"],
        stopped_events=ec["stopped"],
        dead_events=ec["dead"],
        review_backlog=rc["review_backlog"],
        oldest_review_age_s=_age_s(rc["oldest_review_at"], now),
        human_resolved_records=rc["human_resolved"],
        oldest_due_age_s=_age_s(ec["oldest_due_at"], now),
        due_records=ec["due"],
        last_sweep_due=ec["sweep_due"] or 0,
        last_sweep_claimed=ec["sweep_claimed"] or 0,
        spend_today_usd=spend_today.spend_today(prev, ac, now),
        signin_refusals=ec["signin_refusals"],
        orders_watched=rc["orders_watched"],
        orders_analysed=rc["orders_analysed"],
        problems_raised=rc["problems_raised"],
        problems_attached=rc["problems_attached"],
        lead_time_median_s=_float_or_none(rc["lead_time_median_s"]),
    )


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _age_s(since: datetime | None, now: datetime) -> float | None:
    """Seconds from `since` to `now`, at least 0; SQLite's min() comes back naive (UTC)."""
    if since is None:
        return None
    since = since if since.tzinfo is not None else since.replace(tzinfo=UTC)
    return max((now - since).total_seconds(), 0.0)


def _totals(prev: MetricSnapshot | None, ac: dict[str, Any]) -> dict[str, Any]:
    """Cumulative counters: the previous snapshot's totals plus what happened since it."""
    return {
        "attempts_total": (prev.attempts_total if prev else 0) + ac["d_attempts"],
        "failed_attempts_total": (prev.failed_attempts_total if prev else 0) + ac["d_failed"],
        "ai_cost_usd_total": (prev.ai_cost_usd_total if prev else 0.0) + float(ac["d_cost"]),
        "processing_seconds_total": (prev.processing_seconds_total if prev else 0.0)
        + float(ac["d_latency_s"]),
    }


def snapshot_tenant(
    session: Session, tenant: Tenant, settings: Settings, config: MonitorConfig, *, now: datetime
) -> Snapshot:
    """Measure one tenant and add its `metric_snapshots` row (flushed, not committed); the
    tenant's tally deltas are folded first (the caller holds the tenant row's lock)."""
    if tallies.kept(session):
        tallies.fold(session, tenant.id)
    snap = measure(session, tenant, settings, config, now=now)
    row = snap.to_row()
    session.add(row)
    session.flush()
    return Snapshot.from_row(row, tenant.name)


def run_monitor(
    factory: sessionmaker[Session],
    settings: Settings,
    *,
    now: datetime | None = None,
    config: MonitorConfig | None = None,
    pace: float | cadence.Pace = 0.0,
) -> list[Snapshot]:
    """Snapshot every tenant in one transaction; what the `enrichment.monitor` task calls.

    pace: skip a tenant whose latest snapshot is younger than this (seconds, default 0),
    so two beats scheduling the monitor do not evaluate alerts twice per interval; or a
    `cadence.Pace` (what the task passes): each tenant's own gap, a tick while a warning
    fires for it, else the interval (less half a tick). The tenant rows are locked for the
    transaction (`lock_tenants`), so concurrent runs take turns instead of racing."""
    now = now or utcnow()
    config = config or settings.monitor
    with factory.begin() as session:
        tenants = lock_tenants(session)
        gaps = _gaps(session, [t.id for t in tenants], pace)
        tenants = [t for t in tenants if not snapshot_within(session, t.id, now, gaps[t.id])]
        snaps = [snapshot_tenant(session, t, settings, config, now=now) for t in tenants]
    for snap in snaps:
        log.info(
            "monitor.snapshot",
            tenant=snap.tenant,
            completeness_pct=snap.completeness_pct,
            backlog_records=snap.backlog_records,
            oldest_due_age_s=snap.oldest_due_age_s,
            spend_today_usd=snap.spend_today_usd,
        )
    return snaps


def lock_tenants(session: Session) -> list[Tenant]:
    """Every tenant, its row locked FOR NO KEY UPDATE: a second monitor run waits, a new
    record of the tenant does not (its foreign key's check takes FOR KEY SHARE, which
    FOR UPDATE would block for the whole run)."""
    return list(session.scalars(select(Tenant).order_by(Tenant.id).with_for_update(key_share=True)))


def _gaps(session: Session, ids: list[int], pace: float | cadence.Pace):
    """Each tenant's minimum gap since its latest snapshot, read under the tenant locks."""
    if isinstance(pace, cadence.Pace):
        return pace.gaps(session, ids)
    return dict.fromkeys(ids, pace)
