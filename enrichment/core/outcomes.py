"""What a stage's answer or failure writes, decided without the database.

`finish_stage` turns the provider's answer (or its failure) into the record's new columns,
the stage state, the lease change and the attempt row, all on the StageRun; the pipeline
then writes them in one guarded statement.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from enrichment.core import audit_sampling, calibration_maps, order_watch, time_to_person
from enrichment.core.calibration_maps import Current, Source
from enrichment.core.errors import EnrichmentError, PermanentError, ProviderPaused, RateLimited
from enrichment.core.faults import PAUSED, cause_of, is_fleet_fault
from enrichment.core.leases import released
from enrichment.core.models import ORDER, utcnow
from enrichment.core.outbox import ENRICHED, ESCALATED
from enrichment.core.provider import StageCall
from enrichment.core.schemas import Classification
from enrichment.core.settings import Settings
from enrichment.core.stages import Stage
from enrichment.core.states import StageStatus, is_confident, next_failure_step, with_stage
from enrichment.core.taxonomy import Label, disallowed_actions


class OutcomeKind(StrEnum):
    """What the task wrapper does next (the value is what logs and task results show)."""

    CONTINUE = "continue"  # run the next stage
    DONE = "done"  # enriched: the decision and its events are written
    STALE = "stale"  # the token moved on: do nothing
    RETRY = "retry"  # enqueue the chain again after `countdown_s` with `lease_token`
    RELEASED = "released"  # the wait is longer than the horizon: the sweep will claim it
    ESCALATED = "escalated"  # a person decides now: the decision and its event are written
    DEFERRED = "deferred"  # a fleet fault: the lease given back, no retry spent (core/faults.py)


@dataclass(frozen=True)
class Outcome:
    """What the task wrapper does next (`kind`), for which record, with which lease."""

    kind: OutcomeKind
    record_id: int
    lease_token: str | None = None
    countdown_s: float = 0.0


@dataclass
class StageRun:
    """One stage of one record: the row as its start read it, and what its outcome writes.

    Neither statement holds a lock. They are guarded instead: a write lands only while the
    row still has this run's lease token and the `last_enrichment_attempt` stamp this run
    set, so of two deliveries of one message exactly one writes, and an old token nothing.
    """

    stage: Stage
    record_id: int
    tenant_id: int
    tenant: str
    external_id: str
    lease_token: str
    started_at: datetime
    threshold: float
    retry_count: int
    state: dict[str, Any]
    ai_label: str | None
    ai_confidence: float | None
    ai_analysis: dict[str, Any] | None
    ai_source: dict[str, Any]
    # Share of AI-resolved records sampled for a person to check (the tenant's audit rate).
    audit_rate: float = 0.0
    # The record's calibrated confidence and the tenant's latest calibration maps by source
    # (core/calibration_maps.py; read for a classify stage only).
    ai_calibrated_confidence: float | None = None
    calibration: Mapping[Source, Current] = field(default_factory=dict)
    # The tenant's approval_actions: such an action waits for a person, with no event yet.
    approval_actions: frozenset[str] = frozenset()
    # Time to a person (core/time_to_person.py): the record's severity, its limit in seconds
    # and when that limit runs out (None: no limit, as in a test's hand-made run).
    severity: str = "medium"
    limit_s: float = 0.0
    person_by: datetime | None = None
    writes: dict[str, Any] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)
    # Of `actions`, those written AWAITING_APPROVAL (no action.requested event until approved).
    awaiting: list[str] = field(default_factory=list)
    # (type, data) of the decisions this outcome makes; action.requested rows are added by
    # the write, which knows the actions' ids.
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # A watched order (record_type ORDER): its order, its events as read, and the problems
    # its analysis raises as exceptions (core/order_raise.py writes them).
    record_type: str = "exception"
    order_id: int = 0
    order_external_id: str = ""
    order_events: list[dict[str, Any]] = field(default_factory=list)
    raises: list[Any] = field(default_factory=list)
    # (level, event, fields), logged only once the write has landed
    logs: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)


def finish_stage(
    run: StageRun,
    settings: Settings,
    call: StageCall[Any] | EnrichmentError,
    latency_s: float,
    provider_name: str,
    *,
    breaker_cause: str | None = None,
) -> tuple[Outcome, dict[str, Any]]:
    """Decide the stage's outcome: the columns to write (on `run`) and the attempt row.
    breaker_cause: the cause the provider's breaker is open on, if it is."""
    if run.stage == Stage.RESOLVE and not isinstance(call, EnrichmentError):
        bad = disallowed_actions(Label(run.ai_label), list(call.result.actions))
        if bad:
            call = EnrichmentError(
                f"actions {[str(a) for a in bad]} are not allowed for {run.ai_label}"
            )
    if isinstance(call, RateLimited):
        outcome, kind = _wait_for_rate_limit(run, call.wait_s, settings), "rate_limited"
    elif isinstance(call, ProviderPaused) or (
        isinstance(call, EnrichmentError) and is_fleet_fault(call, breaker_open_on=breaker_cause)
    ):
        outcome, kind = _defer(run, call), "deferred"
    elif isinstance(call, EnrichmentError):
        outcome, kind = _fail(run, call, settings), "failed"
    else:
        apply = _apply_order_analysis if run.record_type == ORDER else _APPLY[run.stage]
        outcome, kind = apply(run, call, settings), "completed"
    run.writes["enrichment_state"] = run.state
    return outcome, _attempt(run, kind, call, latency_s, provider_name)


def _attempt(
    run: StageRun,
    outcome: str,
    call: StageCall[Any] | EnrichmentError,
    latency_s: float,
    provider_name: str,
) -> dict[str, Any]:
    is_call = isinstance(call, StageCall)
    # A rejected answer still cost tokens: InvalidAIOutput carries them when the provider knows.
    usage = call.usage if is_call else getattr(call, "usage", None)
    return {
        "tenant_id": run.tenant_id,
        "record_id": run.record_id,
        "stage": run.stage,
        "outcome": outcome,
        "error": None if is_call else _error_text(call),
        "fault": None if is_call else _fault(call),
        "latency_s": latency_s,
        "provider": call.provider if is_call else provider_name,
        # An unusable answer still names the model and prompt that gave it, when known.
        "model": call.model if is_call else getattr(call, "model", None),
        "prompt_version": call.prompt_version if is_call else getattr(call, "prompt_version", None),
        "input_tokens": usage.input_tokens if usage else 0,
        "output_tokens": usage.output_tokens if usage else 0,
        "cache_write_tokens": usage.cache_write_tokens if usage else 0,
        "cache_read_tokens": usage.cache_read_tokens if usage else 0,
        "cost_usd": usage.cost_usd if usage else 0.0,
        "lease_token": run.lease_token,
        **({"detail": _experiment(call)} if _experiment(call) else {}),
        "created_at": utcnow(),  # spelled out: column defaults do not reach a statement with CTEs
    }


def _error_text(error: EnrichmentError) -> str:
    """The attempt's error: the stable message, with the provider's request id when known
    (kept here only: an escalation reason is groupable text)."""
    request_id = getattr(error, "request_id", None)
    text = f"{error} (request_id={request_id})" if request_id else str(error)
    return text[:2000]


def _fault(error: EnrichmentError) -> str | None:
    if isinstance(error, ProviderPaused):
        return PAUSED
    cause = cause_of(error)
    return str(cause) if cause is not None else None


def _source(call: StageCall[Any]) -> dict[str, Any]:
    source = {"provider": call.provider, "model": call.model, "prompt_version": call.prompt_version}
    return {**source, **_experiment(call)}


def _experiment(call: StageCall[Any] | EnrichmentError) -> dict[str, Any]:
    """The experiment variant and the cascade's choice behind an answer, when any."""
    made = {"variant": getattr(call, "variant", None), "cascade": getattr(call, "cascade", None)}
    return {k: v for k, v in made.items() if v is not None}


def _complete(run: StageRun, call: StageCall[Any]) -> None:
    run.state = with_stage(run.state, run.stage, StageStatus.COMPLETED, at=utcnow())
    run.writes["ai_source"] = {**run.ai_source, run.stage: _source(call)}


def _apply_analysis(run: StageRun, call: StageCall[Any], settings: Settings) -> Outcome:
    run.writes["ai_analysis"] = call.result.model_dump(mode="json")
    _complete(run, call)
    return Outcome(OutcomeKind.CONTINUE, run.record_id, run.lease_token)


def _apply_classification(run: StageRun, call: StageCall[Any], settings: Settings) -> Outcome:
    result: Classification = call.result
    calibrated, version = calibration_maps.calibrate(
        run.calibration, _source(call), result.confidence
    )
    run.writes.update(
        ai_label=str(result.label),
        ai_confidence=result.confidence,
        ai_calibrated_confidence=calibrated,
        calibration_version=version,
        ai_notes=result.notes,
    )
    run.ai_label, run.ai_confidence = str(result.label), result.confidence
    run.ai_calibrated_confidence = calibrated
    _complete(run, call)
    confidence = calibration_maps.decisive(result.confidence, calibrated)
    if is_confident(confidence, run.threshold):
        return Outcome(OutcomeKind.CONTINUE, run.record_id, run.lease_token)
    now = utcnow()
    run.state = with_stage(run.state, Stage.RESOLVE, StageStatus.SKIPPED, at=now)
    step = _next_step(run, settings, now)
    if step is None:
        reason = f"confidence {confidence:.2f} < {run.threshold} after all retries"
        return _escalate(run, reason)
    normal = max(step[1], now + timedelta(seconds=settings.low_confidence_recheck_s))
    at = _recheck_at(run, settings, now, normal)
    if at is None:
        return _escalate(
            run, time_to_person.unsure_reason(run.severity, run.threshold, run.limit_s)
        )
    run.writes.update(enrichment_retry_count=step[0], next_attempt_at=at)
    run.logs.append(("info", "stage.low_confidence", {"confidence": confidence}))
    return _release(run)


def _recheck_at(run: StageRun, settings: Settings, now: datetime, normal: datetime):
    """The normal recheck, shortened to fit the record's time to a person; None: escalate."""
    if run.person_by is None:
        return normal
    left = settings.max_retries - run.retry_count
    return time_to_person.recheck_at(now, run.person_by, normal_at=normal, rechecks_left=left)


def _past_limit(run: StageRun, at: datetime) -> bool:
    return run.person_by is not None and time_to_person.too_late(at, run.person_by)


def _late_reason(run: StageRun, error: str) -> str:
    return time_to_person.failing_reason(run.severity, run.limit_s, error)


def _apply_resolution(run: StageRun, call: StageCall[Any], settings: Settings) -> Outcome:
    run.actions = [str(a) for a in call.result.actions]
    run.awaiting = [a for a in run.actions if a in run.approval_actions]
    _complete(run, call)
    resolution = call.result.model_dump(mode="json")
    now = utcnow()
    confidence = calibration_maps.decisive(run.ai_confidence, run.ai_calibrated_confidence)
    p = audit_sampling.probability(confidence, run.threshold, run.audit_rate)
    run.writes.update(
        ai_resolution=resolution,
        **released(),
        enriched_at=now,
        audit_sample=audit_sampling.draw(p),
        sampling_probability=p,
        # In the review queue (kind "approval") while any of its actions waits for a person.
        approval_requested_at=now if run.awaiting else None,
    )
    if run.awaiting:
        run.logs.append(("info", "record.awaiting_approval", {"actions": run.awaiting}))
    decision = {
        "label": run.ai_label,
        "confidence": run.ai_confidence,
        "analysis": run.ai_analysis,
        "actions": run.actions,
        "awaiting_approval": run.awaiting,  # sent once a person approves them, if ever
        "automatable": resolution["automatable"],
        "rationale": resolution["rationale"],
    }
    run.events.append((ENRICHED, {**event_subject(run), **decision}))
    return Outcome(OutcomeKind.DONE, run.record_id)


def event_subject(run: StageRun) -> dict[str, Any]:
    """What every event of this record names: the tenant and the record's external id."""
    return {"tenant": run.tenant, "record": run.external_id}


def _apply_order_analysis(run: StageRun, call: StageCall[Any], settings: Settings) -> Outcome:
    """A watched order analysed: its confident problems to raise, then the watch waits for its
    next deadline (retries start again) or, closed, leaves the backlog for good."""
    run.writes["ai_analysis"] = call.result.model_dump(mode="json")
    _complete(run, call)
    decision = order_watch.decide(
        call.result, run.order_events, threshold=run.threshold, now=run.started_at
    )
    run.raises = decision.raises
    if decision.next_check_at is None:
        run.writes["enriched_at"] = utcnow()
        run.logs.append(("info", "order.closed", {"raised": len(run.raises)}))
    else:
        run.writes.update(enrichment_retry_count=0, next_attempt_at=decision.next_check_at)
    if not run.raises:
        return _release(run)
    run.writes.update(released())
    return Outcome(OutcomeKind.DONE, run.record_id)  # decided: its events go out now


_APPLY = {
    Stage.ANALYZE: _apply_analysis,
    Stage.CLASSIFY: _apply_classification,
    Stage.RESOLVE: _apply_resolution,
}


def _fail(run: StageRun, error: EnrichmentError, settings: Settings) -> Outcome:
    """Leave the stage's fields as they are (NULL on a first try), record, and schedule."""
    now = utcnow()
    message = f"{type(error).__name__}: {error}"
    run.state = with_stage(run.state, run.stage, StageStatus.FAILED, at=now, error=message)
    step = None if isinstance(error, PermanentError) else _next_step(run, settings, now)
    if step is None:
        return _escalate(run, message)
    if _past_limit(run, step[1]):  # the backoff stays; a person gets it in time instead
        return _escalate(run, _late_reason(run, message))
    run.writes.update(enrichment_retry_count=step[0], next_attempt_at=step[1])
    run.logs.append(("info", "stage.failed", {"retry": step[0], "error": message}))
    countdown_s = (step[1] - now).total_seconds()
    if countdown_s > settings.sweep_horizon_s:
        return _release(run)
    return _relet(run, countdown_s, settings)


def _next_step(run: StageRun, settings: Settings, now: datetime):
    return next_failure_step(
        run.retry_count,
        max_retries=settings.max_retries,
        now=now,
        scale=settings.backoff_scale,
        jitter=settings.backoff_jitter,
    )


def _defer(run: StageRun, error: EnrichmentError) -> Outcome:
    """A fleet fault: the stage back to PENDING, its fields as they were, the lease given
    back; retry count and due time unchanged, so the record is claimed again as soon as the
    provider's breaker lets claims through (at once, if it is closed). Past the record's time
    to a person it is escalated instead: the fleet cannot answer it in time."""
    now = utcnow()
    if _past_limit(run, now):
        message = f"{type(error).__name__}: {error}"
        run.state = with_stage(run.state, run.stage, StageStatus.FAILED, at=now, error=message)
        return _escalate(run, _late_reason(run, message))
    run.state = with_stage(run.state, run.stage, StageStatus.PENDING, at=now)
    run.logs.append(("info", "stage.deferred", {"fault": _fault(error), "error": str(error)}))
    run.writes.update(released())
    return Outcome(OutcomeKind.DEFERRED, run.record_id)


def _wait_for_rate_limit(run: StageRun, wait_s: float, settings: Settings) -> Outcome:
    run.state = with_stage(run.state, run.stage, StageStatus.PENDING, at=utcnow())
    return _relet(run, wait_s, settings)


def _relet(run: StageRun, countdown_s: float, settings: Settings) -> Outcome:
    """A new lease for a re-enqueue now: the old chain's later messages become stale."""
    token = str(uuid.uuid4())
    expires = utcnow() + timedelta(seconds=countdown_s + settings.lease_ttl_s)
    run.writes.update(lease_token=token, lease_expires_at=expires)
    return Outcome(OutcomeKind.RETRY, run.record_id, token, countdown_s)


def _release(run: StageRun) -> Outcome:
    run.writes.update(released())
    return Outcome(OutcomeKind.RELEASED, run.record_id)


def _escalate(run: StageRun, reason: str) -> Outcome:
    run.writes.update(
        escalated_at=utcnow(),
        escalation_reason=reason[:2000],
        **released(),
    )
    run.logs.append(("warning", "record.escalated", {"reason": reason}))
    data = {**event_subject(run), "stage": run.stage, "reason": reason[:2000]}
    run.events.append((ESCALATED, data))
    return Outcome(OutcomeKind.ESCALATED, run.record_id)
