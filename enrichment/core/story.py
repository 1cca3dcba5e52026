"""One record's story: its fields now, its stages, every attempt, its actions and events, its
escalation, and the reviews people gave it with the final decision. Shared by the API route,
`enrichment show` and the review queue's items; Pydantic models, so the OpenAPI schema
documents the shape.

Every query is scoped by the tenant's id. The ground truth (`reference_label`, evaluation
only) and lease tokens are never part of a story.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from enrichment.core import calibration_maps, outbox
from enrichment.core.due import is_leased
from enrichment.core.models import (
    ORDER,
    EnrichmentAttempt,
    Order,
    OutboxEvent,
    ResolutionAction,
    Review,
    Tenant,
)
from enrichment.core.models import ExceptionRecord as R
from enrichment.core.stages import STAGES, Stage
from enrichment.core.states import stage_status
from enrichment.core.story_views import (  # noqa: F401 (the shapes, named here for callers)
    ActionView,
    AttemptView,
    Decision,
    Escalation,
    EventView,
    RecordFields,
    ReviewView,
    StageError,
    StageView,
    State,
    Story,
    Summary,
)

FAILED_OUTCOMES = ("failed",)


def ids_by_external(session: Session, tenant_id: int, external_ids: list[str]) -> dict[str, int]:
    """The tenant's records of `external_ids` (the ids a person types): external id -> id;
    the ones it has no record of are left out."""
    if not external_ids:
        return {}
    rows = session.execute(
        select(R.external_id, R.id).where(R.tenant_id == tenant_id, R.external_id.in_(external_ids))
    )
    return {ext: record_id for ext, record_id in rows}


def story(session: Session, tenant: Tenant, external_id: str, *, now: datetime) -> Story | None:
    """The story of the tenant's record `external_id` (the exception's), or None."""
    row = session.execute(
        select(R, Order)
        .join(Order, (Order.id == R.order_id) & (Order.tenant_id == tenant.id))
        .where(R.tenant_id == tenant.id, R.external_id == external_id)
    ).first()
    if row is None:
        return None
    rec, order = row
    attempts = _attempts(session, tenant.id, rec.id)
    return Story(
        tenant=tenant.name,
        record=_fields(rec, order),
        stages=stages(rec.enrichment_state or {}, watch=rec.record_type == ORDER),
        attempts=attempts,
        actions=_actions(session, tenant.id, rec.id),
        events=_events(session, tenant.id, rec.id),
        escalation=_escalation(rec),
        reviews=_reviews(session, tenant.id, rec.id),
        decision=_decision(rec),
        summary=_summary(rec, attempts, now),
    )


def _fields(rec: R, order: Order) -> RecordFields:
    return RecordFields(
        external_id=rec.external_id,
        reason_code=rec.reason_code,
        severity=rec.severity,
        notes=rec.notes,
        status=rec.status,
        order_external_id=order.external_id,
        order_payload=order.payload,
        order_events=order.events or [],
        ai_label=rec.ai_label,
        ai_confidence=rec.ai_confidence,
        ai_calibrated_confidence=rec.ai_calibrated_confidence,
        calibration_version=rec.calibration_version,
        calibration=calibration_maps.words(
            rec.ai_confidence, rec.ai_calibrated_confidence, rec.calibration_version
        ),
        sampling_probability=rec.sampling_probability,
        ai_notes=rec.ai_notes,
        ai_analysis=rec.ai_analysis,
        ai_resolution=rec.ai_resolution,
        ai_source=rec.ai_source or {},
        retry_count=rec.enrichment_retry_count,
        next_attempt_at=rec.next_attempt_at,
        enriched_at=rec.enriched_at,
        audit_sample=bool(rec.audit_sample),
        approval_requested_at=rec.approval_requested_at,
        created_at=rec.created_at,
        updated_at=rec.updated_at,
        record_type=rec.record_type,
        source=rec.source,
        attached_at=rec.attached_at,
    )


def stages(state: dict[str, Any], *, watch: bool = False) -> list[StageView]:
    """Each stage of `enrichment_state` in pipeline order, with its share of the error list
    (entries read "<iso time> <stage>: <error>", see states.with_stage); a watched order
    (`watch`) has the order analysis only."""
    errors = [_split_error(e) for e in state.get("errors", [])]
    return [
        StageView(
            stage=stage,
            status=stage_status(state, stage),
            at=_parse_time(state.get(stage, {}).get("at")),
            error=state.get(stage, {}).get("error"),
            errors=[StageError(at=at, error=msg) for at, s, msg in errors if s == stage],
        )
        for stage in ((Stage.ANALYZE,) if watch else STAGES)
    ]


def _split_error(entry: str) -> tuple[datetime | None, str | None, str]:
    at, _, rest = entry.partition(" ")
    stage, sep, message = rest.partition(": ")
    if not sep or stage not in STAGES:
        return None, None, entry
    return _parse_time(at), stage, message


def _parse_time(raw: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(raw) if raw else None
    except ValueError:
        return None


def _attempts(session: Session, tenant_id: int, record_id: int) -> list[AttemptView]:
    return attempts_of(session, tenant_id, [record_id]).get(record_id, [])


def attempts_of(
    session: Session, tenant_id: int, record_ids: list[int]
) -> dict[int, list[AttemptView]]:
    """The attempts of several records in one query, each record's in time order."""
    A = EnrichmentAttempt
    rows = session.scalars(
        select(A)
        .where(A.tenant_id == tenant_id, A.record_id.in_(record_ids))
        .order_by(A.created_at, A.id)
    )
    found: dict[int, list[AttemptView]] = defaultdict(list)
    for a in rows:
        found[a.record_id].append(AttemptView.model_validate(a, from_attributes=True))
    return found


def orders_of(session: Session, tenant_id: int, record_ids: list[int]) -> dict[int, Order]:
    """The order of each of several records (record id -> order), in one query."""
    rows = session.execute(
        select(R.id, Order)
        .join(Order, (Order.id == R.order_id) & (Order.tenant_id == tenant_id))
        .where(R.tenant_id == tenant_id, R.id.in_(record_ids))
    )
    return {record_id: order for record_id, order in rows}


def _actions(session: Session, tenant_id: int, record_id: int) -> list[ActionView]:
    A = ResolutionAction
    rows = session.scalars(
        select(A)
        .where(A.tenant_id == tenant_id, A.record_id == record_id)
        .order_by(A.created_at, A.id)
    )
    return [ActionView.model_validate(a, from_attributes=True) for a in rows]


def _events(session: Session, tenant_id: int, record_id: int) -> list[EventView]:
    E = OutboxEvent
    rows = session.scalars(
        select(E).where(E.tenant_id == tenant_id, E.record_id == record_id).order_by(E.id)
    )
    return [_event(e) for e in rows]


def _event(e: OutboxEvent) -> EventView:
    return EventView(
        id=e.id,
        webhook_id=outbox.webhook_id(e.id),
        type=e.type,
        action_id=e.action_id,
        status=e.status,
        attempts=e.attempts,
        last_error=e.last_error,
        delivered_at=e.delivered_at,
        created_at=e.created_at,
    )


def _escalation(rec: R) -> Escalation | None:
    if rec.escalated_at is None:
        return None
    return Escalation(
        escalated_at=rec.escalated_at, reason=rec.escalation_reason, closed_at=rec.reviewed_at
    )


def _reviews(session: Session, tenant_id: int, record_id: int) -> list[ReviewView]:
    rows = session.scalars(
        select(Review)
        .where(Review.tenant_id == tenant_id, Review.record_id == record_id)
        .order_by(Review.created_at, Review.id)
    )
    return [ReviewView.model_validate(r, from_attributes=True) for r in rows]


def _decision(rec: R) -> Decision | None:
    if rec.decided_by is None:
        return None
    return Decision(
        final_label=rec.final_label,
        final_actions=rec.final_actions,
        decided_by=rec.decided_by,
        reviewed_at=rec.reviewed_at,
    )


def state_of(rec: R, now: datetime) -> State:
    """Reviewed: a person decided it (escalated or audited). In progress: claimed (a live
    lease) and due, so a worker has it or is about to; a record re-enqueued with a backoff
    countdown is waiting, lease or not."""
    if rec.reviewed_at is not None:
        return "reviewed"
    if rec.enriched_at is not None:
        return "enriched"
    if rec.escalated_at is not None:
        return "escalated"
    leased = is_leased(rec, now)
    return "in progress" if leased and rec.next_attempt_at <= now else "waiting"


def in_review(rec: R) -> bool:
    """In the review queue: the Python twin of models.in_review() (REVIEW_SQL)."""
    if rec.reviewed_at is not None:
        return False
    asked = bool(rec.audit_sample) or rec.approval_requested_at is not None
    return rec.escalated_at is not None or (asked and rec.enriched_at is not None)


def _summary(rec: R, attempts: list[AttemptView], now: datetime) -> Summary:
    ran = [a for a in attempts if a.stage in STAGES]
    return Summary(
        state=state_of(rec, now),
        in_review=in_review(rec),
        total_cost_usd=round(sum(a.cost_usd for a in attempts), 6),
        attempts=len(ran),
        failed_attempts=sum(a.outcome in FAILED_OUTCOMES for a in ran),
    )
