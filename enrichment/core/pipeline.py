"""One stage of one record, end to end: check the lease, call the AI, record the outcome.

A stage is three statements with the AI call between the second and the third, so no row
lock or connection is held across a network call: read the record, stamp the stage
IN_PROGRESS, and write the outcome. The stamp and the write are guarded by the lease token
(see StageRun): a redelivered or duplicated message (an old token) changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import (
    Connection,
    Row,
    select,
    update,
)
from sqlalchemy.orm import Session, sessionmaker

from enrichment.core import (
    breaker,
    breaker_store,
    experiments,
    order_raise,
    record_limits,
    shadow_answers,
    time_to_person,
)
from enrichment.core.calibration_maps import decisive, latest_maps
from enrichment.core.errors import EnrichmentError, ProviderPaused
from enrichment.core.models import (
    ORDER,
    ExceptionRecord,
    Order,
    Tenant,
    utcnow,
)
from enrichment.core.outcomes import Outcome, OutcomeKind, StageRun, finish_stage
from enrichment.core.provider import Provider, RecordContext, StageCall
from enrichment.core.schemas import Analysis, Classification
from enrichment.core.settings import Settings
from enrichment.core.stage_write import guard, write
from enrichment.core.stages import Stage
from enrichment.core.states import (
    StageStatus,
    is_confident,
    needs_run,
    next_stage,
    with_stage,
)
from enrichment.core.taxonomy import Label
from enrichment.core.tenant_settings import TenantSettings

log = structlog.get_logger(__name__)


def run_stage(
    factory: sessionmaker[Session],
    provider: Provider,
    settings: Settings,
    *,
    stage: Stage,
    record_id: int,
    lease_token: str,
) -> Outcome:
    with autocommit(factory) as conn:
        begun = begin_stage(conn, settings, stage, record_id, lease_token)
        if isinstance(begun, Outcome):
            return begun
        provider, key, seen = breaker_store.route(conn, settings, provider, record_id)
    run, ctx = begun
    started = time.perf_counter()
    # A record over the ingestion limits (an old row, a direct insert) is refused unread.
    refused = record_limits.refusal(ctx, settings.record_limits)
    call = refused or _call(provider, run.stage, ctx, seen)
    latency_s = time.perf_counter() - started
    outcome, attempt = finish_stage(
        run, settings, call, latency_s, provider.name, breaker_cause=seen.cause
    )
    with autocommit(factory) as conn:
        if not write(conn, run, attempt):
            log.info("stage.stale_result_dropped", stage=stage, record_id=record_id)
            return Outcome(OutcomeKind.STALE, record_id)
        shadow_answers.save(conn, run.tenant_id, run.record_id, run.stage, call)
    log_landed(run)
    breaker_store.learn(conn.engine, settings, key, seen, attempt)
    return outcome


def log_landed(run: StageRun) -> None:
    """The outcome's log lines (`run.logs`), once its write has landed."""
    for level, event, fields in run.logs:
        getattr(log, level)(event, stage=str(run.stage), record_id=run.record_id, **fields)


def _call(
    provider: Provider, stage: Stage, ctx: RecordContext, seen: breaker.Breaker
) -> StageCall[Any] | EnrichmentError:
    """The provider's answer or its failure; no call at all while the breaker holds it back."""
    if not breaker.admits(seen, ctx.record_id):
        return ProviderPaused(seen.cause)
    try:
        # A watched order's one stage is its own call (core/order_watch.py).
        method = "analyze_order" if ctx.record_type == ORDER else stage.call
        return getattr(provider, method)(ctx)
    except EnrichmentError as exc:
        return exc
    except Exception as exc:  # a provider bug must still be recorded, never lose the record
        log.exception("provider.unexpected_error", stage=stage, record_id=ctx.record_id)
        return EnrichmentError(f"{type(exc).__name__}: {exc}")


@contextmanager
def autocommit(factory: sessionmaker[Session]) -> Iterator[Connection]:
    """A pooled connection without BEGIN/COMMIT round trips: each statement stands alone."""
    with factory() as session, session.get_bind().connect() as conn:  # the session opens none
        yield conn.execution_options(isolation_level="AUTOCOMMIT")


_R = ExceptionRecord


def begin_stage(
    conn: Connection, settings: Settings, stage: Stage | None, record_id: int, lease_token: str
) -> tuple[StageRun, RecordContext] | Outcome:
    """Mark the stage IN_PROGRESS and build its input, or say why there is nothing to do.
    `stage` None: the first stage the record still needs (a Message Batch's choice).

    Two statements: the record with its tenant and order, then the guarded stamp. A running
    chain renews its lease for `lease_ttl_s`, so a long wait in the queue before this stage
    does not let the sweep claim the record again under the chain's feet."""
    row = _read(conn, record_id)
    if row is None or row.lease_token != lease_token or row.escalated_at is not None:
        log.info("stage.stale", stage=stage, record_id=record_id)
        return Outcome(OutcomeKind.STALE, record_id)
    decided_on = decisive(row.ai_confidence, row.ai_calibrated_confidence)
    confident = is_confident(decided_on, row.confidence_threshold)
    if row.record_type == ORDER:  # a watched order: its analysis at every check, no other stage
        if stage not in (None, Stage.ANALYZE):
            return Outcome(OutcomeKind.STALE, record_id)
        stage = Stage.ANALYZE
    else:
        stage = stage or next_stage(row.enrichment_state, confident=confident)
        if stage is None or not needs_run(row.enrichment_state, stage, confident=confident):
            return Outcome(OutcomeKind.CONTINUE, record_id, lease_token)
    if stage == Stage.RESOLVE and not confident:
        # Resolve runs only on a confident classification, whatever message arrives.
        log.warning("stage.resolve_without_confident_label", record_id=record_id)
        return Outcome(OutcomeKind.STALE, record_id)
    now = utcnow()
    state = with_stage(row.enrichment_state, stage, StageStatus.IN_PROGRESS, at=now)
    renewed = now + timedelta(seconds=settings.lease_ttl_s)
    stamped = conn.execute(
        update(_R)
        .where(*guard(record_id, row.tenant_id, lease_token, row.last_enrichment_attempt))
        .values(
            enrichment_state=state,
            last_enrichment_attempt=now,
            lease_expires_at=max(row.lease_expires_at or renewed, renewed),
        )
    )
    if stamped.rowcount != 1:  # another delivery of this message started it first
        log.info("stage.stale", stage=stage, record_id=record_id)
        return Outcome(OutcomeKind.STALE, record_id)
    return _run_of(conn, row, settings, stage, lease_token, now, state)


def resume_stage(
    conn: Connection,
    settings: Settings,
    stage: Stage,
    record_id: int,
    lease_token: str,
    started_at: datetime,
) -> tuple[StageRun, RecordContext] | None:
    """The run `begin_stage` began for a Message Batch request, rebuilt when its result
    arrives; None when the record has moved on (another lease, stamp or an escalation)."""
    row = _read(conn, record_id)
    if (
        row is None
        or row.lease_token != lease_token
        or row.escalated_at is not None
        or row.last_enrichment_attempt != started_at
    ):
        return None
    return _run_of(conn, row, settings, stage, lease_token, started_at, row.enrichment_state)


def _read(conn: Connection, record_id: int) -> Row | None:
    """The record with its tenant and order: everything a stage reads."""
    return conn.execute(
        select(
            _R,
            Tenant.name,
            Tenant.confidence_threshold,
            Tenant.settings,
            Order.payload,
            Order.events,
            Order.external_id.label("order_external_id"),
        )
        .join(Tenant, Tenant.id == _R.tenant_id)
        .join(Order, Order.id == _R.order_id)
        .where(_R.id == record_id)
    ).first()


def _run_of(
    conn: Connection,
    row: Row,
    settings: Settings,
    stage: Stage,
    lease_token: str,
    started_at: datetime,
    state: dict[str, Any],
) -> tuple[StageRun, RecordContext]:
    own = TenantSettings.parse(row.settings)
    limit_s = time_to_person.limit_s(row.severity, own.time_to_person_s, settings.reviews)
    run = StageRun(
        stage=Stage(stage),  # a member, whether the caller named it or passed its value
        record_id=row.id,
        tenant_id=row.tenant_id,
        tenant=row.name,
        external_id=row.external_id,
        lease_token=lease_token,
        started_at=started_at,
        threshold=row.confidence_threshold,
        retry_count=row.enrichment_retry_count,
        state=state,
        ai_label=row.ai_label,
        ai_confidence=row.ai_confidence,
        ai_calibrated_confidence=row.ai_calibrated_confidence,
        ai_analysis=row.ai_analysis,
        ai_source=row.ai_source or {},
        audit_rate=_audit_rate(own, settings),
        # A classify stage calibrates its answer: the tenant's maps (one small query).
        calibration=latest_maps(conn, row.tenant_id) if stage == Stage.CLASSIFY else {},
        approval_actions=own.approval_actions,
        severity=row.severity,
        limit_s=limit_s,
        person_by=time_to_person.deadline(row.created_at, limit_s),
        record_type=row.record_type,
        order_id=row.order_id,
        order_external_id=row.order_external_id,
        order_events=row.events or [],
    )
    ctx = RecordContext(
        tenant=row.name,
        record_id=row.id,
        attempt=row.enrichment_retry_count,
        reason_code=row.reason_code,
        severity=row.severity,
        notes=row.notes,
        order=row.payload,
        # A raised exception's end with its opening (order_raise.context_events).
        events=order_raise.context_events(row.events, row.source, row.created_at),
        # A watch's ai_analysis is an OrderAnalysis, which its own analysis never reads.
        analysis=Analysis.model_validate(row.ai_analysis)
        if row.ai_analysis and row.record_type != ORDER
        else None,
        classification=_classification(row),
        weight=own.weight,
        tenant_id=row.tenant_id,
        experiment=experiments.of_tenant(own, settings),
        cascade=own.cascade,
        record_type=row.record_type,
        as_of=started_at,
    )
    return run, ctx


def _audit_rate(own: TenantSettings, settings: Settings) -> float:
    """The tenant's audit sample rate, else ENRICHMENT_AUDIT_RATE."""
    return settings.reviews.audit_rate if own.audit_rate is None else own.audit_rate


def _classification(row: Row) -> Classification | None:
    if row.ai_label is None or row.ai_confidence is None:
        return None
    return Classification(
        label=Label(row.ai_label), confidence=row.ai_confidence, notes=row.ai_notes or ""
    )
