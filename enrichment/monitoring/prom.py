"""Prometheus exposition of the latest snapshot per tenant, read from the database at scrape
time (a custom collector: no multiprocess files, no Pushgateway, and Prometheus always agrees
with the database).

Names follow Prometheus conventions: base units, `_ratio` for 0-1 fractions, `_total` for
counters. `enrichment_quality_score` stays on the document's 0-100 scale.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from enrichment.core.models import MetricSnapshot, Tenant
from enrichment.monitoring.passes import BUCKET_EDGES, bucket_label

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


def exposition(factory: sessionmaker[Session]) -> bytes:
    """The Prometheus text format for every tenant's latest snapshot."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(factory))
    return generate_latest(registry)
