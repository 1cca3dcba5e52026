"""Rows of every kind of history at chosen ages, for the retention tests (one call each)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from enrichment.core import delivery_log
from enrichment.core.batch_models import Batch, BatchRecord
from enrichment.core.models import EnrichmentAttempt, OutboxEvent, ResolutionAction, Tenant
from enrichment.core.monitor_models import Alert, AlertSilence, MetricSnapshot
from enrichment.core.prune_counts import PruneCount
from tests.factories import make_record

SNAPSHOT_NUMBERS = (
    "total_records", "enriched_records", "backlog_records", "escalated_records",
    "classified_records", "high_confidence_records", "records_per_hour",
    "processing_duration_s", "window_attempts", "window_failed_attempts", "window_chains",
    "window_ai_cost_usd", "attempts_total", "failed_attempts_total", "ai_cost_usd_total",
    "processing_seconds_total",
)  # fmt: skip


def days_ago(now: datetime, days: float) -> datetime:
    return now - timedelta(days=days)


def enriched_record(s: Session, tenant: Tenant, now: datetime, age_days: float, **kw: Any):
    at = days_ago(now, age_days)
    return make_record(s, tenant, created_at=at, enriched_at=at, ai_label="OTHER",
                       ai_confidence=0.9, **kw)  # fmt: skip


def attempt(s: Session, record, outcome: str, at: datetime) -> int:
    row = EnrichmentAttempt(
        tenant_id=record.tenant_id, record_id=record.id, stage="classification",
        outcome=outcome, latency_s=0.1, provider="local", created_at=at,
    )  # fmt: skip
    s.add(row)
    s.flush()
    return row.id


def event(s: Session, record, status: str, at: datetime, *, logged: int = 0) -> int:
    """An outbox event with `logged` delivery-log rows."""
    row = OutboxEvent(tenant_id=record.tenant_id, record_id=record.id, type="record.enriched",
                      data={"id": record.id}, status=status, created_at=at)  # fmt: skip
    s.add(row)
    s.flush()
    for _ in range(logged):
        delivery_log.add(s, record.tenant_id, "record.enriched", status, event_id=row.id, now=at)
    s.flush()
    return row.id


def snapshot(s: Session, tenant: Tenant, at: datetime) -> int:
    row = MetricSnapshot(tenant_id=tenant.id, taken_at=at, window_s=3600.0, integrity={},
                         confidence_buckets={}, **dict.fromkeys(SNAPSHOT_NUMBERS, 0))  # fmt: skip
    s.add(row)
    s.flush()
    return row.id


def alert(s: Session, tenant: Tenant, metric: str, state: str, at: datetime) -> int:
    row = Alert(tenant_id=tenant.id, metric=metric, severity="warning", state=state,
                updated_at=at)  # fmt: skip
    s.add(row)
    s.flush()
    return row.id


def silence(s: Session, tenant: Tenant, starts_at: datetime, ends_at: datetime) -> int:
    row = AlertSilence(tenant_id=tenant.id, metric="backlog", starts_at=starts_at,
                       ends_at=ends_at, created_by="alice")  # fmt: skip
    s.add(row)
    s.flush()
    return row.id


def batch(s: Session, tenant: Tenant, status: str, at: datetime, records=()) -> int:
    row = Batch(tenant_id=tenant.id, stage="classification", model="m", status=status,
                requests=len(records), created_at=at, applied_at=at)  # fmt: skip
    s.add(row)
    s.flush()
    for i, rec in enumerate(records):
        s.add(BatchRecord(batch_id=row.id, record_id=rec.id, tenant_id=tenant.id,
                          custom_id=f"c{i}", lease_token="t", started_at=at))  # fmt: skip
    s.flush()
    return row.id


def action(s: Session, record, name: str = "notify_customer") -> int:
    row = ResolutionAction(tenant_id=record.tenant_id, record_id=record.id, action=name)
    s.add(row)
    s.flush()
    return row.id


def ids(s: Session, model) -> set[int]:
    return set(s.scalars(select(model.id)))


def rows(s: Session, model) -> int:
    return s.scalar(select(func.count()).select_from(model))


def counters(s: Session) -> dict[tuple[int, str], int]:
    return {(c.tenant_id, c.table_name): c.rows for c in s.scalars(select(PruneCount))}
