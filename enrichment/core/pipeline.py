"""One stage of one record, end to end: check the lease, call the AI, record the outcome.

A stage is three statements with the AI call between the second and the third, so no row
lock or connection is held across a network call: read the record, stamp the stage
IN_PROGRESS, and write the outcome. The stamp and the write are guarded by the lease token
(see StageRun): a redelivered or duplicated message (an old token) changes nothing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import (
    ARRAY,
    Connection,
    Row,
    Text,
    case,
    exists,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from enrichment.core.errors import EnrichmentError, PermanentError, RateLimited
from enrichment.core.models import (
    EnrichmentAttempt,
    ExceptionRecord,
    Order,
    ResolutionAction,
    Tenant,
    UTCDateTime,
    utcnow,
)
from enrichment.core.provider import Provider, RecordContext, StageCall
from enrichment.core.schemas import Analysis, Classification
from enrichment.core.settings import Settings
from enrichment.core.states import (
    StageStatus,
    is_confident,
    needs_run,
    next_failure_step,
    with_stage,
)
from enrichment.core.taxonomy import Label, disallowed_actions

log = structlog.get_logger(__name__)

# Celery task name suffix -> stage name in enrichment_state (the seed's names).
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
    with _autocommit(factory) as conn:
        begun = begin_stage(conn, settings, stage, record_id, lease_token)
    if isinstance(begun, Outcome):
        return begun
    run, ctx = begun
    started = time.perf_counter()
    try:
        call: StageCall[Any] | EnrichmentError = getattr(provider, _CALL[stage])(ctx)
    except EnrichmentError as exc:
        call = exc
    except Exception as exc:  # a provider bug must still be recorded, never lose the record
        log.exception("provider.unexpected_error", stage=stage, record_id=record_id)
        call = EnrichmentError(f"{type(exc).__name__}: {exc}")
    latency_s = time.perf_counter() - started
    outcome, attempt = finish_stage(run, settings, call, latency_s, provider.name)
    with _autocommit(factory) as conn:
        if not _write(conn, run, attempt):
            log.info("stage.stale_result_dropped", stage=stage, record_id=record_id)
            return Outcome("stale", record_id)
    for level, event, fields in run.logs:
        getattr(log, level)(event, stage=stage, record_id=record_id, **fields)
    return outcome


@contextmanager
def _autocommit(factory: sessionmaker[Session]) -> Iterator[Connection]:
    """A pooled connection without BEGIN/COMMIT round trips: each statement stands alone."""
    with factory.kw["bind"].connect() as conn:
        yield conn.execution_options(isolation_level="AUTOCOMMIT")


@dataclass
class StageRun:
    """One stage of one record: the row as its start read it, and what its outcome writes.

    Neither statement holds a lock. They are guarded instead: a write lands only while the
    row still has this run's lease token and the `last_enrichment_attempt` stamp this run
    set, so of two deliveries of one message exactly one writes, and an old token nothing.
    """

    stage: str
    record_id: int
    tenant_id: int
    lease_token: str
    started_at: datetime
    threshold: float
    retry_count: int
    state: dict[str, Any]
    ai_label: str | None
    ai_source: dict[str, Any]
    writes: dict[str, Any] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)
    # (level, event, fields), logged only once the write has landed
    logs: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)


_R = ExceptionRecord


def _guard(record_id: int, tenant_id: int, lease_token: str, stamp: datetime | None) -> list:
    return [
        _R.id == record_id,
        _R.tenant_id == tenant_id,
        _R.lease_token == lease_token,
        _R.escalated_at.is_(None),
        _R.last_enrichment_attempt.is_not_distinct_from(stamp),
    ]


def begin_stage(
    conn: Connection, settings: Settings, stage: str, record_id: int, lease_token: str
) -> tuple[StageRun, RecordContext] | Outcome:
    """Mark the stage IN_PROGRESS and build its input, or say why there is nothing to do.

    Two statements: the record with its tenant and order, then the guarded stamp. A running
    chain renews its lease for `lease_ttl_s`, so a long wait in the queue before this stage
    does not let the sweep claim the record again under the chain's feet."""
    row = conn.execute(
        select(_R, Tenant.name, Tenant.confidence_threshold, Order.payload, Order.events)
        .join(Tenant, Tenant.id == _R.tenant_id)
        .join(Order, Order.id == _R.order_id)
        .where(_R.id == record_id)
    ).first()
    if row is None or row.lease_token != lease_token or row.escalated_at is not None:
        log.info("stage.stale", stage=stage, record_id=record_id)
        return Outcome("stale", record_id)
    confident = is_confident(row.ai_confidence, row.confidence_threshold)
    if not needs_run(row.enrichment_state, stage, confident=confident):
        return Outcome("continue", record_id, lease_token)
    if stage == "automation" and not confident:
        # Resolve runs only on a confident classification, whatever message arrives.
        log.warning("stage.resolve_without_confident_label", record_id=record_id)
        return Outcome("stale", record_id)
    now = utcnow()
    state = with_stage(row.enrichment_state, stage, StageStatus.IN_PROGRESS, at=now)
    renewed = now + timedelta(seconds=settings.lease_ttl_s)
    stamped = conn.execute(
        update(_R)
        .where(*_guard(record_id, row.tenant_id, lease_token, row.last_enrichment_attempt))
        .values(
            enrichment_state=state,
            last_enrichment_attempt=now,
            lease_expires_at=max(row.lease_expires_at or renewed, renewed),
        )
    )
    if stamped.rowcount != 1:  # another delivery of this message started it first
        log.info("stage.stale", stage=stage, record_id=record_id)
        return Outcome("stale", record_id)
    run = StageRun(
        stage=stage,
        record_id=record_id,
        tenant_id=row.tenant_id,
        lease_token=lease_token,
        started_at=now,
        threshold=row.confidence_threshold,
        retry_count=row.enrichment_retry_count,
        state=state,
        ai_label=row.ai_label,
        ai_source=row.ai_source or {},
    )
    ctx = RecordContext(
        tenant=row.name,
        record_id=record_id,
        attempt=row.enrichment_retry_count,
        reason_code=row.reason_code,
        severity=row.severity,
        notes=row.notes,
        order=row.payload,
        events=row.events,
        analysis=Analysis.model_validate(row.ai_analysis) if row.ai_analysis else None,
        classification=_classification(row),
    )
    return run, ctx


def _classification(row: Row) -> Classification | None:
    if row.ai_label is None or row.ai_confidence is None:
        return None
    return Classification(
        label=Label(row.ai_label), confidence=row.ai_confidence, notes=row.ai_notes or ""
    )


def finish_stage(
    run: StageRun,
    settings: Settings,
    call: StageCall[Any] | EnrichmentError,
    latency_s: float,
    provider_name: str,
) -> tuple[Outcome, dict[str, Any]]:
    """Decide the stage's outcome: the columns to write (on `run`) and the attempt row."""
    if run.stage == "automation" and not isinstance(call, EnrichmentError):
        bad = disallowed_actions(Label(run.ai_label), list(call.result.actions))
        if bad:
            call = EnrichmentError(
                f"actions {[str(a) for a in bad]} are not allowed for {run.ai_label}"
            )
    if isinstance(call, RateLimited):
        outcome, kind = _wait_for_rate_limit(run, call.wait_s, settings), "rate_limited"
    elif isinstance(call, EnrichmentError):
        outcome, kind = _fail(run, call, settings), "failed"
    else:
        outcome, kind = _APPLY[run.stage](run, call, settings), "completed"
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
        "error": None if is_call else str(call)[:2000],
        "latency_s": latency_s,
        "provider": call.provider if is_call else provider_name,
        "model": call.model if is_call else None,
        "prompt_version": call.prompt_version if is_call else None,
        "input_tokens": usage.input_tokens if usage else 0,
        "output_tokens": usage.output_tokens if usage else 0,
        "cache_write_tokens": usage.cache_write_tokens if usage else 0,
        "cache_read_tokens": usage.cache_read_tokens if usage else 0,
        "cost_usd": usage.cost_usd if usage else 0.0,
        "lease_token": run.lease_token,
        "created_at": utcnow(),  # spelled out: column defaults do not reach a statement with CTEs
    }


def _write(conn: Connection, run: StageRun, attempt: dict[str, Any]) -> bool:
    """The record's new columns, its actions and the attempt row; False when the guard
    failed (the attempt is then recorded as stale and nothing else changes).

    PostgreSQL: one statement, one round trip (the update and the action insert are CTEs).
    SQLite (the embedded demo), which has no data-modifying CTEs: one short transaction."""
    guarded = (
        update(_R)
        .where(*_guard(run.record_id, run.tenant_id, run.lease_token, run.started_at))
        .values(**run.writes, updated_at=utcnow())  # onupdate does not reach into a CTE
    )
    if conn.dialect.name == "postgresql":
        rec = guarded.returning(_R.id).cte("rec")
        stmt = postgresql.insert(EnrichmentAttempt).values(
            {**attempt, "outcome": case((exists(rec.select()), attempt["outcome"]), else_="stale")}
        )
        if run.actions:
            # Every column spelled out, as for the attempt.
            acts = select(
                literal(run.tenant_id),
                rec.c.id,
                func.unnest(literal(run.actions, ARRAY(Text))),
                literal("RECORDED"),
                literal(utcnow(), UTCDateTime),
            )
            cols = ["tenant_id", "record_id", "action", "status", "created_at"]
            # The unique (record, action) key makes a re-run record nothing new.
            stmt = stmt.add_cte(
                postgresql.insert(ResolutionAction)
                .from_select(cols, acts)
                .on_conflict_do_nothing()
                .cte("acts")
            )
        return conn.execute(stmt.returning(EnrichmentAttempt.outcome)).scalar_one() != "stale"
    with conn.begin():
        landed = conn.execute(guarded).rowcount == 1
        if landed and run.actions:
            rows = [
                {"tenant_id": run.tenant_id, "record_id": run.record_id, "action": a}
                for a in run.actions
            ]
            conn.execute(sqlite.insert(ResolutionAction).values(rows).on_conflict_do_nothing())
        conn.execute(
            insert(EnrichmentAttempt).values(
                {**attempt, "outcome": attempt["outcome"] if landed else "stale"}
            )
        )
    return landed


def _source(call: StageCall[Any]) -> dict[str, Any]:
    return {"provider": call.provider, "model": call.model, "prompt_version": call.prompt_version}


def _complete(run: StageRun, call: StageCall[Any]) -> None:
    run.state = with_stage(run.state, run.stage, StageStatus.COMPLETED, at=utcnow())
    run.writes["ai_source"] = {**run.ai_source, run.stage: _source(call)}


def _apply_analysis(run: StageRun, call: StageCall[Any], settings: Settings) -> Outcome:
    run.writes["ai_analysis"] = call.result.model_dump(mode="json")
    _complete(run, call)
    return Outcome("continue", run.record_id, run.lease_token)


def _apply_classification(run: StageRun, call: StageCall[Any], settings: Settings) -> Outcome:
    result: Classification = call.result
    run.writes.update(
        ai_label=str(result.label), ai_confidence=result.confidence, ai_notes=result.notes
    )
    _complete(run, call)
    if is_confident(result.confidence, run.threshold):
        return Outcome("continue", run.record_id, run.lease_token)
    now = utcnow()
    run.state = with_stage(run.state, "automation", StageStatus.SKIPPED, at=now)
    step = _next_step(run, settings, now)
    if step is None:
        reason = f"confidence {result.confidence:.2f} < {run.threshold} after all retries"
        return _escalate(run, reason)
    recheck = now + timedelta(seconds=settings.low_confidence_recheck_s)
    run.writes.update(enrichment_retry_count=step[0], next_attempt_at=max(step[1], recheck))
    run.logs.append(("info", "stage.low_confidence", {"confidence": result.confidence}))
    return _release(run)


def _apply_resolution(run: StageRun, call: StageCall[Any], settings: Settings) -> Outcome:
    run.actions = [str(a) for a in call.result.actions]
    _complete(run, call)
    run.writes.update(
        ai_resolution=call.result.model_dump(mode="json"),
        enriched_at=utcnow(),
        lease_token=None,
        lease_expires_at=None,
    )
    return Outcome("done", run.record_id)


_APPLY = {
    "order_analysis": _apply_analysis,
    "classification": _apply_classification,
    "automation": _apply_resolution,
}


def _fail(run: StageRun, error: EnrichmentError, settings: Settings) -> Outcome:
    """Leave the stage's fields as they are (NULL on a first try), record, and schedule."""
    now = utcnow()
    message = f"{type(error).__name__}: {error}"
    run.state = with_stage(run.state, run.stage, StageStatus.FAILED, at=now, error=message)
    step = None if isinstance(error, PermanentError) else _next_step(run, settings, now)
    if step is None:
        return _escalate(run, message)
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


def _wait_for_rate_limit(run: StageRun, wait_s: float, settings: Settings) -> Outcome:
    run.state = with_stage(run.state, run.stage, StageStatus.PENDING, at=utcnow())
    return _relet(run, wait_s, settings)


def _relet(run: StageRun, countdown_s: float, settings: Settings) -> Outcome:
    """A new lease for a re-enqueue now: the old chain's later messages become stale."""
    token = str(uuid.uuid4())
    expires = utcnow() + timedelta(seconds=countdown_s + settings.lease_ttl_s)
    run.writes.update(lease_token=token, lease_expires_at=expires)
    return Outcome("retry", run.record_id, token, countdown_s)


def _release(run: StageRun) -> Outcome:
    run.writes.update(lease_token=None, lease_expires_at=None)
    return Outcome("released", run.record_id)


def _escalate(run: StageRun, reason: str) -> Outcome:
    run.writes.update(
        escalated_at=utcnow(),
        escalation_reason=reason[:2000],
        lease_token=None,
        lease_expires_at=None,
    )
    run.logs.append(("warning", "record.escalated", {"reason": reason}))
    return Outcome("escalated", run.record_id)
