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

from enrichment.alerting import alert_store, alerts, notices, provider_page
from enrichment.alerting.notices import Notice
from enrichment.core import text
from enrichment.core.models import ExceptionRecord as R
from enrichment.core.models import ResolutionAction, Tenant, is_escalated
from enrichment.core.monitor_models import Alert, MetricSnapshot
from enrichment.core.settings import Settings
from enrichment.metrics.monitor import Snapshot, measure
from enrichment.reporting import words
from enrichment.reporting.order_figures import OrderFigures
from enrichment.reporting.order_figures import of as order_figures
from enrichment.reviews import calibration
from enrichment.reviews.calibration import Calibration

Status = Literal["healthy", "warning", "critical", "no_data"]
TREND_MAX_POINTS = 500
ESCALATIONS_SHOWN = 20
OUTCOMES_SHOWN = 20


class AlertView(BaseModel):
    metric: str
    severity: str
    state: Literal["pending", "firing"]
    value: float | None
    threshold: float | None
    since: datetime | None
    words: str = Field("", description="the threshold in plain words")
    value_words: str = Field("", description="the value with its unit")


class ThresholdView(BaseModel):
    """One threshold that can set the status, judged against the live numbers."""

    name: str = Field(description="e.g. escalated_warning; tenants override it by this name")
    words: str = Field(description="the same in plain words, e.g. 'completeness under 70 %'")
    metric: str
    severity: str
    threshold: float
    value: float | None
    value_words: str = Field(description="the measured value with its unit")
    crossed: bool
    judged: bool = Field(description="false: no data, or too small a sample to judge yet")
    note: str = Field("", description="why it is not judged yet, in plain words")


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
    stopped_events: int = Field(
        0, description="outbox events the webhook refused with a 4xx: nothing retries them"
    )
    dead_events: int = Field(0, description="outbox events given up on after every retry")
    problems: list[str] = Field(description="threshold names crossed, e.g. backlog_critical")
    alerts: list[AlertView] = Field(description="pending and firing alerts")
    integrity: dict[str, dict[str, float | bool | None]]
    thresholds: list[ThresholdView] = Field(
        default_factory=list, description="every threshold that can set the status, crossed first"
    )
    provider: list[str] = Field(
        default_factory=list,
        description="the AI provider's breakers that are paused, in plain words, with the "
        "tenant's records they hold back (empty: the provider is called); paused is critical",
    )
    notices: list[Notice] = Field(
        default_factory=list,
        description="INFO: early signs (a rising failure rate, a growing queue wait, a budget "
        "at 80 %); shown, never pushed, never change the status",
    )
    orders: OrderFigures | None = Field(
        None, description="watched orders, problems raised, the lead time; null: no order yet"
    )


class TrendPoint(BaseModel):
    taken_at: datetime
    completeness_pct: float | None
    backlog_records: int
    quality_score: float | None
    failure_rate_pct: float | None


class EscalatedItem(BaseModel):
    """A record handed to a person, and why."""

    record_id: int
    external_id: str
    reason_code: str
    escalated_at: datetime
    escalation_reason: str | None
    retry_count: int
    ai_label: str | None
    ai_confidence: float | None
    last_error: str | None
    notes: str | None = Field(description="the customer's note on the record")


class ActionOutcome(BaseModel):
    """An action its receiver reported on (POST /api/enrichment/actions/...)."""

    action_id: int
    external_id: str = Field(description="the record's")
    action: str
    status: Literal["DONE", "FAILED"]
    note: str | None
    reported_at: datetime


class Actions(BaseModel):
    """The tenant's automated actions: RECORDED (decided), DELIVERED (its event got a 2xx),
    DONE or FAILED (as the receiver reported); AWAITING_APPROVAL (a person approves it before
    it is sent) or DECLINED (a person refused it: never sent)."""

    by_status: dict[str, int]
    reported: list[ActionOutcome] = Field(
        default_factory=list, description=f"the latest {OUTCOMES_SHOWN} reported outcomes"
    )


class Report(BaseModel):
    """Every metric (units in the names: _pct 0-100, _s seconds, _usd dollars) and a trend."""

    tenant: str
    health: Health
    metrics: Snapshot
    trend: list[TrendPoint]
    confidence_threshold: float | None = Field(None, description="the tenant's, 0-1")
    escalations: list[EscalatedItem] = Field(
        default_factory=list, description=f"the oldest {ESCALATIONS_SHOWN} escalated records"
    )
    actions: Actions | None = None
    calibration: Calibration | None = Field(
        None, description="the AI against people's labels (reviews), with threshold advice"
    )


def judge(snap: Snapshot, rules: tuple[alerts.Rule, ...], min_sample: int) -> list[ThresholdView]:
    """Every rule against the snapshot, in the order given (no for-N delay here)."""
    return [_judged(rule, snap, min_sample) for rule in rules]


def _judged(rule: alerts.Rule, snap: Snapshot, min_sample: int) -> ThresholdView:
    value = getattr(snap, rule.field)
    sample = getattr(snap, rule.sample_field) if rule.sample_field else None
    note = words.not_judged(rule, value, sample, min_sample)
    return ThresholdView(
        name=rule.name,
        words=words.threshold(rule),
        metric=rule.metric,
        severity=rule.severity,
        threshold=rule.threshold,
        value=value,
        value_words=words.metric_value(rule, value),
        crossed=alerts.holds(rule, value, sample, firing=False, min_sample=min_sample),
        judged=not note,
        note=note,
    )


def _status(snap: Snapshot, views: list[ThresholdView]) -> Status:
    severities = {v.severity for v in views if v.crossed}
    if snap.total_records == 0:
        return "no_data"
    return "critical" if alerts.CRITICAL in severities else "warning" if severities else "healthy"


def _alert_views(session: Session, tenant: Tenant, fleet_error_rate: float) -> list[AlertView]:
    rules = {
        (r.metric, r.severity): r for r in alerts.rules_for(tenant.settings or {}, fleet_error_rate)
    }
    return [
        _alert_view(a, rules.get((a.metric, a.severity)))
        for a in alert_store.firing(session, tenant.id)
    ]


def _alert_view(a: Alert, rule: alerts.Rule | None) -> AlertView:
    return AlertView(
        metric=a.metric,
        severity=a.severity,
        state=a.state,
        value=a.value,
        threshold=a.threshold,
        since=a.active_since,
        words=words.threshold(rule) if rule else a.metric,
        value_words=words.metric_value(rule, a.value) if rule else text.number(a.value),
    )


def _crossed_first(views: list[ThresholdView]) -> list[ThresholdView]:
    return sorted(views, key=lambda v: (not v.crossed, v.severity != alerts.CRITICAL))


def health_from(session: Session, tenant: Tenant, snap: Snapshot, settings: Settings) -> Health:
    views = judge(
        snap,
        alerts.rules_for(tenant.settings or {}, settings.reviews.max_auto_error_rate),
        settings.alerts.min_sample,
    )
    status = _status(snap, views)
    crossed = {v.metric for v in views if v.crossed}
    found = notices.for_snapshot(session, snap, tenant.settings or {}, settings, crossed=crossed)
    paused = provider_page.paused_lines(
        session.connection(), settings, snap.taken_at, tenant_id=tenant.id
    )
    problems = [] if status == "no_data" else [v.name for v in views if v.crossed]
    if paused:  # the whole fleet's fault, and a page of its own: critical for every tenant
        status, problems = "critical", [*problems, provider_page.METRIC]
    return Health(
        tenant=tenant.name,
        status=status,
        measured_at=snap.taken_at,
        completeness_pct=snap.completeness_pct,
        backlog_records=snap.backlog_records,
        quality_score=snap.quality_score,
        failure_rate_pct=snap.failure_rate_pct,
        escalated_records=snap.escalated_records,
        stopped_events=snap.stopped_events,
        dead_events=snap.dead_events,
        problems=problems,
        alerts=_alert_views(session, tenant, settings.reviews.max_auto_error_rate),
        integrity=snap.integrity,
        thresholds=_crossed_first(views),
        notices=found,
        provider=paused,
        orders=order_figures(snap),
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
        confidence_threshold=tenant.confidence_threshold,
        escalations=escalations(session, tenant, limit=ESCALATIONS_SHOWN),
        actions=actions(session, tenant.id),
        calibration=calibration.measure(session, tenant, settings),
    )


def actions(session: Session, tenant_id: int) -> Actions:
    """Counts by status and the latest reported outcomes, failures first to the eye."""
    A = ResolutionAction
    counts = session.execute(
        select(A.status, func.count()).where(A.tenant_id == tenant_id).group_by(A.status)
    ).all()
    rows = session.execute(
        select(A, R.external_id)
        .join(R, and_(R.id == A.record_id, R.tenant_id == A.tenant_id))
        .where(A.tenant_id == tenant_id, A.reported_at.is_not(None))
        .order_by(A.reported_at.desc(), A.id.desc())
        .limit(OUTCOMES_SHOWN)
    ).all()
    reported = [
        ActionOutcome(
            action_id=a.id,
            external_id=ext,
            action=a.action,
            status=a.status,
            note=a.note,
            reported_at=a.reported_at,
        )
        for a, ext in rows
    ]
    return Actions(by_status=dict(counts), reported=reported)


def last_error(rec: R) -> str | None:
    return ((rec.enrichment_state or {}).get("errors") or [None])[-1]


def _escalated_item(rec: R) -> EscalatedItem:
    return EscalatedItem(
        record_id=rec.id,
        external_id=rec.external_id,
        reason_code=rec.reason_code,
        escalated_at=rec.escalated_at,
        escalation_reason=rec.escalation_reason,
        retry_count=rec.enrichment_retry_count,
        ai_label=rec.ai_label,
        ai_confidence=rec.ai_confidence,
        last_error=last_error(rec),
        notes=rec.notes,
    )


def escalations(session: Session, tenant: Tenant, *, limit: int) -> list[EscalatedItem]:
    """The tenant's escalated records, oldest escalation first (they waited longest)."""
    recs = session.scalars(
        select(R)
        .where(R.tenant_id == tenant.id, is_escalated())
        .order_by(R.escalated_at, R.id)
        .limit(limit)
    )
    return [_escalated_item(r) for r in recs]
