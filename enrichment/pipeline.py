"""One stage of one record, end to end: check the lease, call the AI, record the outcome.

A stage runs in two short transactions with the AI call between them, so no row lock or
connection is held across a network call. Both transactions check the lease token: a
redelivered or duplicated message (an old token) changes nothing.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import Row, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from enrichment.errors import EnrichmentError, PermanentError, RateLimited
from enrichment.models import (
    EnrichmentAttempt,
    ExceptionRecord,
    Order,
    ResolutionAction,
    Tenant,
    utcnow,
)
from enrichment.providers.base import Provider, RecordContext, StageCall
from enrichment.schemas import Analysis, Classification
from enrichment.settings import Settings
from enrichment.states import StageStatus, is_confident, needs_run, next_failure_step, with_stage
from enrichment.taxonomy import Label, disallowed_actions

log = structlog.get_logger(__name__)

# Celery task name suffix -> stage name in enrichment_state (the seed's names).
STAGE_OF_TASK = {"analyze": "order_analysis", "classify": "classification", "resolve": "automation"}
_CALL = {"order_analysis": "analyze", "classification": "classify", "automation": "resolve"}


@dataclass(frozen=True)
class Outcome:
    """What the task wrapper does next.

    kind: "continue" (run the next stage), "done", "stale" (token moved on: do nothing),
    "retry" (enqueue the chain again after `countdown_s` with `lease_token`),
    "released" (the wait is longer than the horizon: the sweep will claim it), "escalated".
    """

    kind: str
    record_id: int
    lease_token: str | None = None
    countdown_s: float = 0.0


def run_stage(
    factory: sessionmaker[Session],
    provider: Provider,
    settings: Settings,
    *,
    stage: str,
    record_id: int,
    lease_token: str,
) -> Outcome:
    with factory.begin() as session:
        ctx = begin_stage(session, settings, stage, record_id, lease_token)
    if isinstance(ctx, Outcome):
        return ctx
    started = time.perf_counter()
    try:
        call: StageCall[Any] | EnrichmentError = getattr(provider, _CALL[stage])(ctx)
    except EnrichmentError as exc:
        call = exc
    except Exception as exc:  # a provider bug must still be recorded, never lose the record
        log.exception("provider.unexpected_error", stage=stage, record_id=record_id)
        call = EnrichmentError(f"{type(exc).__name__}: {exc}")
    latency_s = time.perf_counter() - started
    with factory.begin() as session:
        return finish_stage(
            session, settings, stage, record_id, lease_token, call, latency_s, provider.name
        )


def _locked(session: Session, record_id: int, *, with_order: bool = False) -> Row | None:
    """(record, tenant[, order]) in one round trip, the record's row locked FOR UPDATE.

    `of=ExceptionRecord` keeps the lock on the record's row only; a locked tenant row would
    serialise every stage of that tenant.
    """
    also = (Tenant, Order) if with_order else (Tenant,)
    stmt = select(ExceptionRecord, *also).join(Tenant, Tenant.id == ExceptionRecord.tenant_id)
    if with_order:
        stmt = stmt.join(Order, Order.id == ExceptionRecord.order_id)
    stmt = stmt.where(ExceptionRecord.id == record_id).with_for_update(of=ExceptionRecord)
    return session.execute(stmt).first()


def begin_stage(
    session: Session, settings: Settings, stage: str, record_id: int, lease_token: str
) -> RecordContext | Outcome:
    """Mark the stage IN_PROGRESS and build its input, or say why there is nothing to do.

    A running chain renews its lease for `lease_ttl_s`, so a long wait in the queue before
    this stage does not let the sweep claim the record again under the chain's feet."""
    row = _locked(session, record_id, with_order=True)
    if row is None or row[0].lease_token != lease_token or row[0].escalated_at is not None:
        log.info("stage.stale", stage=stage, record_id=record_id)
        return Outcome("stale", record_id)
    rec, tenant, order = row
    confident = is_confident(rec.ai_confidence, tenant.confidence_threshold)
    if not needs_run(rec.enrichment_state, stage, confident=confident):
        return Outcome("continue", record_id, lease_token)
    if stage == "automation" and not confident:
        # Resolve runs only on a confident classification, whatever message arrives.
        log.warning("stage.resolve_without_confident_label", record_id=record_id)
        return Outcome("stale", record_id)
    now = utcnow()
    rec.enrichment_state = with_stage(rec.enrichment_state, stage, StageStatus.IN_PROGRESS, at=now)
    rec.last_enrichment_attempt = now
    renewed = now + timedelta(seconds=settings.lease_ttl_s)
    rec.lease_expires_at = max(rec.lease_expires_at or renewed, renewed)
    return RecordContext(
        tenant=tenant.name,
        record_id=rec.id,
        attempt=rec.enrichment_retry_count,
        reason_code=rec.reason_code,
        severity=rec.severity,
        notes=rec.notes,
        order=order.payload,
        events=order.events,
        analysis=Analysis.model_validate(rec.ai_analysis) if rec.ai_analysis else None,
        classification=_classification(rec),
    )


def _classification(rec: ExceptionRecord) -> Classification | None:
    if rec.ai_label is None or rec.ai_confidence is None:
        return None
    return Classification(
        label=Label(rec.ai_label), confidence=rec.ai_confidence, notes=rec.ai_notes or ""
    )


def finish_stage(
    session: Session,
    settings: Settings,
    stage: str,
    record_id: int,
    lease_token: str,
    call: StageCall[Any] | EnrichmentError,
    latency_s: float,
    provider_name: str,
) -> Outcome:
    # The tenant stays referenced here, so _apply_classification's session.get(Tenant) is
    # answered from the identity map (it holds weak references) instead of a query.
    rec, _tenant = _locked(session, record_id)
    failed = isinstance(call, EnrichmentError)
    if stage == "automation" and not failed:
        bad = disallowed_actions(Label(rec.ai_label), list(call.result.actions))
        if bad:
            call = EnrichmentError(
                f"actions {[str(a) for a in bad]} are not allowed for {rec.ai_label}"
            )
            failed = True
    stale = rec.lease_token != lease_token or rec.escalated_at is not None
    outcome = "stale" if stale else "failed" if failed else "completed"
    if isinstance(call, RateLimited) and not stale:
        outcome = "rate_limited"
    _record_attempt(session, rec, stage, outcome, call, latency_s, lease_token, provider_name)
    if stale:
        log.info("stage.stale_result_dropped", stage=stage, record_id=record_id)
        return Outcome("stale", record_id)
    if isinstance(call, RateLimited):
        return _wait_for_rate_limit(rec, stage, call.wait_s, settings)
    if failed:
        return _fail(rec, stage, call, settings)
    return _APPLY[stage](session, rec, call, settings)


def _record_attempt(session, rec, stage, outcome, call, latency_s, lease_token, provider_name):
    is_call = isinstance(call, StageCall)
    # A rejected answer still cost tokens: InvalidAIOutput carries them when the provider knows.
    usage = call.usage if is_call else getattr(call, "usage", None)
    session.add(
        EnrichmentAttempt(
            tenant_id=rec.tenant_id,
            record_id=rec.id,
            stage=stage,
            outcome=outcome,
            error=None if is_call else str(call)[:2000],
            latency_s=latency_s,
            provider=call.provider if is_call else provider_name,
            model=call.model if is_call else None,
            prompt_version=call.prompt_version if is_call else None,
            input_tokens=usage.input_tokens if usage else 0,
            output_tokens=usage.output_tokens if usage else 0,
            cache_write_tokens=usage.cache_write_tokens if usage else 0,
            cache_read_tokens=usage.cache_read_tokens if usage else 0,
            cost_usd=usage.cost_usd if usage else 0.0,
            lease_token=lease_token,
        )
    )


def _source(call: StageCall[Any]) -> dict[str, Any]:
    return {"provider": call.provider, "model": call.model, "prompt_version": call.prompt_version}


def _complete(rec: ExceptionRecord, stage: str, call: StageCall[Any]) -> None:
    rec.enrichment_state = with_stage(
        rec.enrichment_state, stage, StageStatus.COMPLETED, at=utcnow()
    )
    rec.ai_source = {**rec.ai_source, stage: _source(call)}


def _apply_analysis(session, rec, call, settings) -> Outcome:
    rec.ai_analysis = call.result.model_dump(mode="json")
    _complete(rec, "order_analysis", call)
    return Outcome("continue", rec.id, rec.lease_token)


def _apply_classification(session, rec, call, settings) -> Outcome:
    result: Classification = call.result
    rec.ai_label, rec.ai_confidence, rec.ai_notes = (
        str(result.label),
        result.confidence,
        result.notes,
    )
    _complete(rec, "classification", call)
    threshold = session.get(Tenant, rec.tenant_id).confidence_threshold
    if is_confident(result.confidence, threshold):
        return Outcome("continue", rec.id, rec.lease_token)
    now = utcnow()
    rec.enrichment_state = with_stage(
        rec.enrichment_state, "automation", StageStatus.SKIPPED, at=now
    )
    step = _next_step(rec, settings, now)
    if step is None:
        return _escalate(rec, f"confidence {result.confidence:.2f} < {threshold} after all retries")
    rec.enrichment_retry_count = step[0]
    rec.next_attempt_at = max(step[1], now + timedelta(seconds=settings.low_confidence_recheck_s))
    log.info("stage.low_confidence", record_id=rec.id, confidence=result.confidence)
    return _release(rec)


def _apply_resolution(session, rec, call, settings) -> Outcome:
    insert = postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert
    actions = [str(a) for a in call.result.actions]
    if actions:
        rows = [{"tenant_id": rec.tenant_id, "record_id": rec.id, "action": a} for a in actions]
        # The unique (record, action) key makes a re-run record nothing new.
        session.execute(insert(ResolutionAction).values(rows).on_conflict_do_nothing())
    rec.ai_resolution = call.result.model_dump(mode="json")
    _complete(rec, "automation", call)
    rec.enriched_at = utcnow()
    rec.lease_token = rec.lease_expires_at = None
    return Outcome("done", rec.id)


_APPLY = {
    "order_analysis": _apply_analysis,
    "classification": _apply_classification,
    "automation": _apply_resolution,
}


def _fail(rec: ExceptionRecord, stage: str, error: EnrichmentError, settings: Settings) -> Outcome:
    """Leave the stage's fields as they are (NULL on a first try), record, and schedule."""
    now = utcnow()
    message = f"{type(error).__name__}: {error}"
    rec.enrichment_state = with_stage(
        rec.enrichment_state, stage, StageStatus.FAILED, at=now, error=message
    )
    step = None if isinstance(error, PermanentError) else _next_step(rec, settings, now)
    if step is None:
        return _escalate(rec, message)
    rec.enrichment_retry_count, rec.next_attempt_at = step
    log.info("stage.failed", stage=stage, record_id=rec.id, retry=step[0], error=message)
    countdown_s = (step[1] - now).total_seconds()
    if countdown_s > settings.sweep_horizon_s:
        return _release(rec)
    return _relet(rec, countdown_s, settings)


def _next_step(rec: ExceptionRecord, settings: Settings, now):
    return next_failure_step(
        rec.enrichment_retry_count,
        max_retries=settings.max_retries,
        now=now,
        scale=settings.backoff_scale,
        jitter=settings.backoff_jitter,
    )


def _wait_for_rate_limit(rec, stage, wait_s: float, settings: Settings) -> Outcome:
    rec.enrichment_state = with_stage(rec.enrichment_state, stage, StageStatus.PENDING, at=utcnow())
    return _relet(rec, wait_s, settings)


def _relet(rec: ExceptionRecord, countdown_s: float, settings: Settings) -> Outcome:
    """A new lease for a re-enqueue now: the old chain's later messages become stale."""
    rec.lease_token = str(uuid.uuid4())
    rec.lease_expires_at = utcnow() + timedelta(seconds=countdown_s + settings.lease_ttl_s)
    return Outcome("retry", rec.id, rec.lease_token, countdown_s)


def _release(rec: ExceptionRecord) -> Outcome:
    rec.lease_token = rec.lease_expires_at = None
    return Outcome("released", rec.id)


def _escalate(rec: ExceptionRecord, reason: str) -> Outcome:
    rec.escalated_at = utcnow()
    rec.escalation_reason = reason[:2000]
    rec.lease_token = rec.lease_expires_at = None
    log.warning("record.escalated", record_id=rec.id, reason=reason)
    return Outcome("escalated", rec.id)
