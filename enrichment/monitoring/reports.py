"""Health, report and backlog views of one tenant: shared by the API, the HTML report and
the CLI. Pydantic models, so the API's OpenAPI schema documents every response shape.

Health and report are measured live (the monitor's few indexed aggregates, nothing written);
the trend comes from stored snapshots. Every query is scoped by the tenant's id.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from enrichment.core.models import ExceptionRecord as R
from enrichment.core.models import MetricSnapshot, Tenant, in_backlog, is_escalated
from enrichment.core.settings import Settings
from enrichment.monitoring import alerts
from enrichment.monitoring.monitor import Snapshot, measure

Status = Literal["healthy", "warning", "critical", "no_data"]
TREND_MAX_POINTS = 500


class AlertView(BaseModel):
    metric: str
    severity: str
    state: Literal["pending", "firing"]
    value: float | None
    threshold: float | None
    since: datetime | None


class Health(BaseModel):
    """Status now: the worst threshold the live numbers cross (no for-N delay here)."""

    tenant: str
    status: Status
    measured_at: datetime
    completeness_pct: float | None = Field(description="% of records fully enriched")
    backlog_records: int = Field(description="records still waiting for enrichment")
    quality_score: float | None = Field(description="0-100, see enrichment.monitor")
    failure_rate_pct: float | None = Field(description="% of the window's attempts that failed")
    escalated_records: int
    problems: list[str] = Field(description="threshold names crossed, e.g. backlog_critical")
    alerts: list[AlertView] = Field(description="pending and firing alerts")
    integrity: dict[str, dict[str, float | bool | None]]


class TrendPoint(BaseModel):
    taken_at: datetime
    completeness_pct: float | None
    backlog_records: int
    quality_score: float | None
    failure_rate_pct: float | None


class Report(BaseModel):
    """Every metric (units in the names: _pct 0-100, _s seconds, _usd dollars) and a trend."""

    tenant: str
    health: Health
    metrics: Snapshot
    trend: list[TrendPoint]


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


def status_of(snap: Snapshot, tenant: Tenant, policy: alerts.AlertPolicy) -> tuple[Status, list]:
    """The worst severity whose threshold the snapshot crosses, and the names crossed."""
    if snap.total_records == 0:
        return "no_data", []
    crossed = [
        rule
        for rule in alerts.rules_for(tenant.settings or {})
        if alerts.holds(
            rule,
            getattr(snap, rule.field),
            getattr(snap, rule.sample_field) if rule.sample_field else None,
            firing=False,
            min_sample=policy.min_sample,
        )
    ]
    severities = {r.severity for r in crossed}
    status = "critical" if alerts.CRITICAL in severities else "warning" if crossed else "healthy"
    return status, [r.name for r in crossed]


def _alert_views(session: Session, tenant_id: int) -> list[AlertView]:
    return [
        AlertView(
            metric=a.metric,
            severity=a.severity,
            state=a.state,
            value=a.value,
            threshold=a.threshold,
            since=a.active_since,
        )
        for a in alerts.firing(session, tenant_id)
    ]


def health_from(session: Session, tenant: Tenant, snap: Snapshot, settings: Settings) -> Health:
    status, problems = status_of(snap, tenant, settings.alerts)
    return Health(
        tenant=tenant.name,
        status=status,
        measured_at=snap.taken_at,
        completeness_pct=snap.completeness_pct,
        backlog_records=snap.backlog_records,
        quality_score=snap.quality_score,
        failure_rate_pct=snap.failure_rate_pct,
        escalated_records=snap.escalated_records,
        problems=problems,
        alerts=_alert_views(session, tenant.id),
        integrity=snap.integrity,
    )


def health(session: Session, tenant: Tenant, settings: Settings, *, now: datetime) -> Health:
    snap = measure(session, tenant, settings, settings.monitor, now=now)
    return health_from(session, tenant, snap, settings)


def trend(session: Session, tenant_id: int, *, since: datetime) -> list[TrendPoint]:
    """Stored snapshots since `since`, oldest first (the latest TREND_MAX_POINTS)."""
    rows = session.scalars(
        select(MetricSnapshot)
        .where(MetricSnapshot.tenant_id == tenant_id, MetricSnapshot.taken_at >= since)
        .order_by(MetricSnapshot.taken_at.desc())
        .limit(TREND_MAX_POINTS)
    ).all()
    return [TrendPoint.model_validate(r, from_attributes=True) for r in reversed(rows)]


def report(
    session: Session, tenant: Tenant, settings: Settings, *, now: datetime, hours: float = 24.0
) -> Report:
    """Live metrics plus the last `hours` hours of snapshots (24 by default)."""
    snap = measure(session, tenant, settings, settings.monitor, now=now)
    return Report(
        tenant=tenant.name,
        health=health_from(session, tenant, snap, settings),
        metrics=snap,
        trend=trend(session, tenant.id, since=now - timedelta(hours=hours)),
    )


def _backlog_item(rec: R, now: datetime) -> BacklogItem:
    errors = (rec.enrichment_state or {}).get("errors") or [None]
    return BacklogItem(
        record_id=rec.id,
        external_id=rec.external_id,
        reason_code=rec.reason_code,
        retry_count=rec.enrichment_retry_count,
        next_attempt_at=rec.next_attempt_at,
        leased=rec.lease_expires_at is not None and rec.lease_expires_at > now,
        created_at=rec.created_at,
        last_error=errors[-1],
    )


def backlog(session: Session, tenant: Tenant, *, now: datetime, limit: int = 20) -> Backlog:
    """Counts over the partial index `ix_exception_records_backlog`, and the next `limit`."""
    waiting = and_(R.tenant_id == tenant.id, in_backlog())
    counts = session.execute(
        select(
            func.count(),
            func.count().filter(R.next_attempt_at <= now),
            func.count().filter(R.enrichment_retry_count > 0),
            func.count().filter(R.lease_expires_at > now),
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
    )
