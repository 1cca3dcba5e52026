"""The monitor's tables: one snapshot per tenant and evaluation, the alerts' state, the
silences, each tenant's share of the latest sweep, and the record tallies. (The indexes on
the records that the monitor reads live in record_indexes.py.)"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from enrichment.core.models import Base, JSONType, UTCDateTime, utcnow


class MetricSnapshot(Base):
    """One monitor evaluation of one tenant. Percentages are 0-100; durations in seconds.

    `window_*` columns cover the `window_s` seconds before `taken_at`; `*_total` columns are
    cumulative since the tenant's first snapshot (Prometheus counters read them).
    """

    __tablename__ = "metric_snapshots"
    __table_args__ = (Index("ix_metric_snapshots_tenant_taken", "tenant_id", "taken_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime)
    window_s: Mapped[float] = mapped_column(Float)
    total_records: Mapped[int] = mapped_column(Integer)
    enriched_records: Mapped[int] = mapped_column(Integer)
    backlog_records: Mapped[int] = mapped_column(Integer)
    escalated_records: Mapped[int] = mapped_column(Integer)
    classified_records: Mapped[int] = mapped_column(Integer)
    high_confidence_records: Mapped[int] = mapped_column(Integer)
    completeness_pct: Mapped[float | None] = mapped_column(Float)
    high_confidence_pct: Mapped[float | None] = mapped_column(Float)
    quality_score: Mapped[float | None] = mapped_column(Float)
    failure_rate_pct: Mapped[float | None] = mapped_column(Float)
    pipeline_success_pct: Mapped[float | None] = mapped_column(Float)
    records_per_hour: Mapped[float] = mapped_column(Float)
    avg_processing_time_s: Mapped[float | None] = mapped_column(Float)
    processing_duration_s: Mapped[float] = mapped_column(Float)
    time_to_enrich_s: Mapped[float | None] = mapped_column(Float)
    window_attempts: Mapped[int] = mapped_column(Integer)
    window_failed_attempts: Mapped[int] = mapped_column(Integer)
    window_chains: Mapped[int] = mapped_column(Integer)
    window_ai_cost_usd: Mapped[float] = mapped_column(Float)
    window_batch_ai_cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    cache_hit_pct: Mapped[float | None] = mapped_column(Float)
    attempts_total: Mapped[int] = mapped_column(Integer)
    failed_attempts_total: Mapped[int] = mapped_column(Integer)
    ai_cost_usd_total: Mapped[float] = mapped_column(Float)
    processing_seconds_total: Mapped[float] = mapped_column(Float)
    confidence_buckets: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # Outbox events now: waiting for delivery (pending), refused by the receiver (stopped: a
    # 4xx, a person must look), and given up on (dead).
    undelivered_events: Mapped[int] = mapped_column(Integer, default=0)
    stopped_events: Mapped[int] = mapped_column(Integer, default=0)
    dead_events: Mapped[int] = mapped_column(Integer, default=0)
    # The review queue now: its size, its oldest item's wait (s), and the people-resolved.
    review_backlog: Mapped[int] = mapped_column(Integer, default=0)
    oldest_review_age_s: Mapped[float | None] = mapped_column(Float)
    human_resolved_records: Mapped[int] = mapped_column(Integer, default=0)
    # Starvation and budget: the oldest due record's wait, the due records now, what the last
    # sweep claimed of them, and today's AI spend (UTC day).
    oldest_due_age_s: Mapped[float | None] = mapped_column(Float)
    due_records: Mapped[int] = mapped_column(Integer, default=0)
    last_sweep_due: Mapped[int] = mapped_column(Integer, default=0)
    last_sweep_claimed: Mapped[int] = mapped_column(Integer, default=0)
    spend_today_usd: Mapped[float] = mapped_column(Float, default=0.0)
    # Wrong reviewer keys on the review page in the last 5 min (metrics/signin.py).
    signin_refusals: Mapped[int] = mapped_column(Integer, default=0)
    # Orders as records (core/order_watch.py): open watches, orders analysed at least once,
    # and exceptions the order analysis raised (all time, like the record counts).
    orders_watched: Mapped[int] = mapped_column(Integer, default=0)
    orders_analysed: Mapped[int] = mapped_column(Integer, default=0)
    problems_raised: Mapped[int] = mapped_column(Integer, default=0)
    # Of those, the ones a tenant's own exception later attached to (all time), and the median
    # of raised -> attached over the latest 100 attachments (s; NULL before any).
    problems_attached: Mapped[int] = mapped_column(Integer, default=0)
    lead_time_median_s: Mapped[float | None] = mapped_column(Float)
    # The error rate of automated decisions over the rolling window of audit reviews
    # (metrics/drift.py): the reviews it rests on, the weighted estimate and its two-sided
    # 95 % Clopper-Pearson interval (percent; NULL without reviews).
    auto_reviews: Mapped[int] = mapped_column(Integer, default=0)
    auto_error_pct: Mapped[float | None] = mapped_column(Float)
    auto_error_low_pct: Mapped[float | None] = mapped_column(Float)
    auto_error_high_pct: Mapped[float | None] = mapped_column(Float)
    integrity: Mapped[dict[str, Any]] = mapped_column(JSONType)


class Alert(Base):
    """Alert state per (tenant, metric, severity): survives restarts, so dedup does too.

    state: "inactive", "pending" (condition held < N evaluations), "firing", or "resolved"
    (cleared; the resolved notification is not delivered yet).
    """

    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("tenant_id", "metric", "severity"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    metric: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="inactive")
    consecutive: Mapped[int] = mapped_column(Integer, default=0)
    value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    active_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    notifications_sent: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class AlertSilence(Base):
    """Mutes notifications for one tenant (and one metric, or all when NULL) in a time window."""

    __tablename__ = "alert_silences"
    __table_args__ = (Index("ix_alert_silences_tenant_ends", "tenant_id", "ends_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    metric: Mapped[str | None] = mapped_column(String(32))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str | None] = mapped_column(String(64))
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SweepStat(Base):
    """One tenant's share of the latest sweep: what was due to it (counted as far as the
    claim's walk read: at least its share, at most the batch) and what it got. Upserted by
    every claim; the monitor reads it (starvation is visible per tenant)."""

    __tablename__ = "sweep_stats"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    swept_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due: Mapped[int] = mapped_column(Integer)
    claimed: Mapped[int] = mapped_column(Integer)


class _TallyKey:
    """A group of one tenant's records and how many there are (core/tallies.py): the
    group's key is what the monitor counts records by. Kept on PostgreSQL by triggers on
    exception_records (migration 0024); no foreign key to tenants, so that a record's write
    never waits on the monitor's lock of its tenant row."""

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(Integer)
    record_type: Mapped[str] = mapped_column(String(16))
    enriched: Mapped[bool] = mapped_column(Boolean)
    escalated: Mapped[bool] = mapped_column(Boolean)
    reviewed: Mapped[bool] = mapped_column(Boolean)
    queued: Mapped[bool] = mapped_column(Boolean)  # in the review queue (REVIEW_SQL)
    human: Mapped[bool] = mapped_column(Boolean)  # decided_by "human"
    analysed: Mapped[bool] = mapped_column(Boolean)  # ai_analysis IS NOT NULL
    raised: Mapped[bool] = mapped_column(Boolean)  # raised by the order analysis
    attached: Mapped[bool] = mapped_column(Boolean)  # attached_at IS NOT NULL
    retries: Mapped[int] = mapped_column(Integer)
    # ai_confidence's tenth (0-9, as the monitor's buckets cut it) and hundredth (floor of
    # confidence x 100, clamped to -100..200); NULL without a confidence.
    decile: Mapped[int | None] = mapped_column(Integer)
    cent: Mapped[int | None] = mapped_column(Integer)
    n: Mapped[int] = mapped_column(BigInteger)


class RecordTally(_TallyKey, Base):
    """The folded counts: one row per tenant and key, rewritten by each fold."""

    __tablename__ = "record_tallies"
    __table_args__ = (Index("ix_record_tallies_tenant_id", "tenant_id"),)


class RecordTallyDelta(_TallyKey, Base):
    """What changed since the last fold: +n / -n rows the triggers append (never updated, so
    writers never wait on each other here); the monitor folds them into record_tallies."""

    __tablename__ = "record_tally_deltas"
    __table_args__ = (Index("ix_record_tally_deltas_tenant_id", "tenant_id"),)
