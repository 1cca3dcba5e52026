"""Prometheus exposition of the latest snapshot per tenant, read from the database at scrape
time (a custom collector: no multiprocess files, no Pushgateway, and Prometheus always agrees
with the database); and the fleet's autoscaling signals, measured at scrape time: the broker's
queue depths and live workers (read by workers/queues.py and handed in), the backlog, the
throughput per worker and `enrichment_desired_workers` (`desired_workers`).

Names follow Prometheus conventions: base units, `_ratio` for 0-1 fractions, `_total` for
counters. `enrichment_quality_score` stays on the document's 0-100 scale.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from enrichment.alerting import provider_page
from enrichment.core.due import FleetLoad, fleet_load
from enrichment.core.models import Tenant, utcnow
from enrichment.core.monitor_models import MetricSnapshot
from enrichment.core.settings import Settings
from enrichment.core.stages import STAGES_PER_RECORD
from enrichment.metrics import pruned, signin
from enrichment.metrics.passes import BUCKET_EDGES, bucket_label

# (name, help, snapshot field, scale): gauges. Percentages become ratios (scale 0.01).
GAUGES: tuple[tuple[str, str, str, float], ...] = (
    ("enrichment_completeness_ratio", "Share of records fully enriched", "completeness_pct", 0.01),
    ("enrichment_backlog_records", "Records awaiting enrichment", "backlog_records", 1.0),
    ("enrichment_escalated_records", "Records escalated to a person", "escalated_records", 1.0),
    ("enrichment_records", "Exception records known", "total_records", 1.0),
    (
        "enrichment_undelivered_events",
        "Outbox events waiting for delivery",
        "undelivered_events",
        1.0,
    ),
    ("enrichment_dead_events", "Outbox events given up on (redeliver)", "dead_events", 1.0),
    (
        "enrichment_stopped_events",
        "Outbox events the webhook refused with a 4xx (fix, then redeliver)",
        "stopped_events",
        1.0,
    ),
    ("enrichment_review_backlog_records", "Records waiting for a person", "review_backlog", 1.0),
    (
        "enrichment_oldest_review_age_seconds",
        "How long the review queue's oldest item has waited",
        "oldest_review_age_s",
        1.0,
    ),
    (
        "enrichment_human_resolved_records",
        "Records resolved by a person's review",
        "human_resolved_records",
        1.0,
    ),
    ("enrichment_quality_score", "Quality score, 0-100", "quality_score", 1.0),
    ("enrichment_high_confidence_ratio", "Share of confident labels", "high_confidence_pct", 0.01),
    (
        "enrichment_failure_ratio",
        "Failed share of attempts in the window",
        "failure_rate_pct",
        0.01,
    ),
    ("enrichment_pipeline_success_ratio", "Chains with no failure", "pipeline_success_pct", 0.01),
    ("enrichment_records_processed_per_hour", "Records enriched per hour", "records_per_hour", 1.0),
    (
        "enrichment_avg_processing_seconds",
        "AI seconds per record attempted in the window",
        "avg_processing_time_s",
        1.0,
    ),
    (
        "enrichment_time_to_enrich_seconds",
        "Mean creation-to-enriched time",
        "time_to_enrich_s",
        1.0,
    ),
    ("enrichment_window_ai_cost_usd", "AI cost in the monitor window", "window_ai_cost_usd", 1.0),
    (
        "enrichment_window_batch_ai_cost_usd",
        "AI cost in the monitor window through Message Batches",
        "window_batch_ai_cost_usd",
        1.0,
    ),
    (
        "enrichment_cache_hit_ratio",
        "Cached input tokens over all input tokens in the monitor window",
        "cache_hit_pct",
        0.01,
    ),
    (
        "enrichment_oldest_due_age_seconds",
        "How long the oldest record due now has waited unclaimed",
        "oldest_due_age_s",
        1.0,
    ),
    ("enrichment_due_records", "Records due now and not claimed", "due_records", 1.0),
    ("enrichment_last_sweep_due_records", "Due records at the last sweep", "last_sweep_due", 1.0),
    (
        "enrichment_last_sweep_claimed_records",
        "Records the last sweep claimed",
        "last_sweep_claimed",
        1.0,
    ),
    ("enrichment_spend_today_usd", "AI cost since 00:00 UTC today", "spend_today_usd", 1.0),
    ("enrichment_orders_watched", "Open order watches", "orders_watched", 1.0),
    ("enrichment_orders_analysed", "Watched orders analysed at least once", "orders_analysed", 1.0),
    ("enrichment_problems_raised", "Exceptions the order analysis raised", "problems_raised", 1.0),
    (
        "enrichment_problems_attached",
        "Raised exceptions a tenant's own exception later attached to",
        "problems_attached",
        1.0,
    ),
    (
        "enrichment_order_lead_time_median_seconds",
        "Median time from raising a problem to the tenant's own exception, latest 100",
        "lead_time_median_s",
        1.0,
    ),
)
COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("enrichment_records_enriched", "Records fully enriched", "enriched_records"),
    ("enrichment_attempts", "Stage attempts", "attempts_total"),
    ("enrichment_failed_attempts", "Stage attempts that failed", "failed_attempts_total"),
    ("enrichment_ai_cost_usd", "AI cost in US dollars", "ai_cost_usd_total"),
    ("enrichment_processing_seconds", "AI call time in seconds", "processing_seconds_total"),
)


def latest_snapshots(session: Session) -> list[tuple[str, MetricSnapshot]]:
    """The newest snapshot of every tenant (index `ix_metric_snapshots_tenant_taken`)."""
    newest = (
        select(MetricSnapshot.tenant_id, func.max(MetricSnapshot.taken_at).label("at"))
        .group_by(MetricSnapshot.tenant_id)
        .subquery()
    )
    stmt = (
        select(Tenant.name, MetricSnapshot)
        .join(Tenant, Tenant.id == MetricSnapshot.tenant_id)
        .join(
            newest,
            (newest.c.tenant_id == MetricSnapshot.tenant_id)
            & (newest.c.at == MetricSnapshot.taken_at),
        )
        .order_by(Tenant.name)
    )
    return [(name, snap) for name, snap in session.execute(stmt)]


def _histogram(rows: list[tuple[str, MetricSnapshot]]) -> HistogramMetricFamily:
    fam = HistogramMetricFamily(
        "enrichment_confidence", "AI confidence of classified records", labels=["tenant"]
    )
    for tenant, snap in rows:
        counts = [snap.confidence_buckets.get(bucket_label(i), 0) for i in range(10)]
        cumulative, buckets = 0, []
        for i, n in enumerate(counts):
            cumulative += n
            buckets.append((str(BUCKET_EDGES[i + 1]), cumulative))
        buckets[-1] = ("+Inf", cumulative)
        # The sum of confidences is not stored; the bucket midpoints estimate it.
        est = sum(n * (BUCKET_EDGES[i] + 0.05) for i, n in enumerate(counts))
        fam.add_metric([tenant], buckets, est)
    return fam


def families(rows: list[tuple[str, MetricSnapshot]]) -> Iterator[Metric]:
    for name, doc, field, scale in GAUGES:
        fam = GaugeMetricFamily(name, doc, labels=["tenant"])
        for tenant, snap in rows:
            value = getattr(snap, field)
            if value is not None:
                fam.add_metric([tenant], value * scale)
        yield fam
    for name, doc, field in COUNTERS:
        fam = CounterMetricFamily(name, doc, labels=["tenant"])
        for tenant, snap in rows:
            fam.add_metric([tenant], getattr(snap, field))
        yield fam
    yield _integrity(rows)
    yield _timestamps(rows)
    yield _histogram(rows)


def _integrity(rows: list[tuple[str, MetricSnapshot]]) -> GaugeMetricFamily:
    fam = GaugeMetricFamily(
        "enrichment_integrity_check_ok", "1 passing, 0 failing", labels=["tenant", "check"]
    )
    for tenant, snap in rows:
        for check, result in sorted(snap.integrity.items()):
            if result.get("ok") is not None:
                fam.add_metric([tenant, check], 1.0 if result["ok"] else 0.0)
    return fam


def _timestamps(rows: list[tuple[str, MetricSnapshot]]) -> GaugeMetricFamily:
    fam = GaugeMetricFamily(
        "enrichment_snapshot_timestamp_seconds", "When the monitor measured", labels=["tenant"]
    )
    for tenant, snap in rows:
        fam.add_metric([tenant], snap.taken_at.timestamp())
    return fam


class SnapshotCollector:
    """Reads the latest snapshots on every scrape."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory

    def collect(self) -> Iterator[Metric]:
        with self.factory() as session:
            rows = latest_snapshots(session)
        yield from families(rows)


# --- the fleet's autoscaling signals -----------------------------------------------------------


class BrokerView(Protocol):
    """What the broker said at scrape time (workers/queues.BrokerReading)."""

    depths: Mapping[str, int]
    workers: int


def per_worker_records_per_s(work: FleetLoad, workers: int) -> float | None:
    """Records per second one worker finished over the throughput window (the sweep's:
    due.throughput_window_s, 60 s by default); None without workers."""
    if workers <= 0:
        return None
    return work.records_per_s / workers


def desired_workers(
    backlog: int,
    per_worker_per_s: float | None,
    workers: int,
    *,
    target_drain_s: float,
    ai_records_per_s: float | None = None,
) -> int:
    """The workers that drain `backlog` records within `target_drain_s` seconds:

        desired = max(1, min(ceil(B / (r * T)), ceil(L / r)))

    B the backlog (due now and unclaimed, plus in a chain), r the records per second one worker
    finished over the throughput window (due.throughput_window_s, a minute by default), T
    ENRICHMENT_TARGET_DRAIN_S, L the records per second the AI rate limit allows
    (ENRICHMENT_AI_RPM / 3; no cap when unlimited or without the AI): more workers than the
    limit keeps busy only wait for tokens. With no throughput measured (no
    worker, or none finished a stage in the window) it is the workers there are: nothing to
    extrapolate from. Never below 1: the sweep, the monitor and deliveries run on workers.
    """
    if backlog <= 0:
        return 1
    if not per_worker_per_s:
        return max(1, workers)
    need = math.ceil(backlog / (per_worker_per_s * target_drain_s))
    if ai_records_per_s:
        need = min(need, math.ceil(ai_records_per_s / per_worker_per_s))
    return max(1, need)


def ai_records_per_s(settings: Settings) -> float | None:
    """The records per second ENRICHMENT_AI_RPM allows (three calls a record), or None."""
    if settings.ai_provider != "anthropic" or settings.ai_rpm <= 0:
        return None
    return settings.ai_rpm / 60.0 / STAGES_PER_RECORD


def fleet_families(
    work: FleetLoad, broker: BrokerView | None, settings: Settings
) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "enrichment_broker_up", "1 if the broker answered this scrape", value=int(bool(broker))
    )
    yield GaugeMetricFamily(
        "enrichment_fleet_backlog_records",
        "Records due now and unclaimed, or in a chain, all tenants",
        value=work.backlog,
    )
    if broker is None:
        return
    depth = GaugeMetricFamily(
        "enrichment_broker_queue_messages",
        "Messages waiting in the broker queue, not yet delivered to a worker",
        labels=["queue"],
    )
    for queue, n in sorted(broker.depths.items()):
        depth.add_metric([queue], n)
    yield depth
    yield GaugeMetricFamily(
        "enrichment_workers_online", "Worker processes that answered a ping", value=broker.workers
    )
    rate = per_worker_records_per_s(work, broker.workers)
    if rate is not None:
        yield GaugeMetricFamily(
            "enrichment_worker_throughput_records_per_second",
            "Records one worker finished per second over the throughput window (60 s by default)",
            value=rate,
        )
    desired = desired_workers(
        work.backlog,
        rate,
        broker.workers,
        target_drain_s=settings.target_drain_s,
        ai_records_per_s=ai_records_per_s(settings),
    )
    yield GaugeMetricFamily(
        "enrichment_desired_workers",
        "Workers that drain the backlog within ENRICHMENT_TARGET_DRAIN_S",
        value=desired,
    )


class FleetCollector:
    """Reads the fleet's work on every scrape; the broker reading comes with the scrape."""

    def __init__(
        self, factory: sessionmaker[Session], settings: Settings, broker: BrokerView | None
    ) -> None:
        self.factory, self.settings, self.broker = factory, settings, broker

    def collect(self) -> Iterator[Metric]:
        with self.factory() as session:
            work = fleet_load(session, self.settings, utcnow(), count_due=True)
        yield from fleet_families(work, self.broker, self.settings)


def exposition(
    factory: sessionmaker[Session],
    settings: Settings | None = None,
    *,
    broker: BrokerView | None = None,
) -> bytes:
    """The Prometheus text format for every tenant's latest snapshot; with `settings`, the
    fleet's autoscaling signals too (`broker` None: the broker could not be read)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(factory))
    registry.register(signin.SigninCollector(factory))
    registry.register(pruned.PruneCollector(factory))
    if settings is not None:
        registry.register(FleetCollector(factory, settings, broker))
        registry.register(provider_page.BreakerCollector(factory, settings))
    return generate_latest(registry)
