"""Polling batches and applying their results (the package docstring has the story)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from enrichment.batches.handback import hand_back, hand_back_all, mark_applied
from enrichment.core import breaker_store, pipeline, stage_write
from enrichment.core.batch_models import (
    APPLIED,
    ENDED,
    GIVEN_UP,
    IN_PROGRESS,
    SUBMITTING,
    Batch,
    BatchRecord,
)
from enrichment.core.crashpoints import crash_point
from enrichment.core.due import chain_lease_s
from enrichment.core.errors import EnrichmentError
from enrichment.core.leases import released
from enrichment.core.models import utcnow
from enrichment.core.outcomes import OutcomeKind, finish_stage
from enrichment.core.settings import Settings
from enrichment.providers.anthropic import AnthropicProvider
from enrichment.providers.anthropic_batches import BatchResult

log = structlog.get_logger(__name__)


def poll_and_apply(
    factory: sessionmaker[Session],
    provider: AnthropicProvider,
    settings: Settings,
    *,
    now: datetime | None = None,
) -> Counter[str]:
    """Give up batches whose create never returned, note the progress of those in flight,
    and apply the results of those that ended. Returns the outcomes applied, by kind."""
    now = now or utcnow()
    done: Counter[str] = Counter()
    give_up_lost(factory, settings, now=now)
    with factory() as s:
        live = s.scalars(
            select(Batch).where(Batch.status.in_([IN_PROGRESS, ENDED])).order_by(Batch.id)
        ).all()
    for batch in live:
        if batch.status == IN_PROGRESS and not _ended(factory, provider, settings, batch):
            continue
        crash_point("batch_apply.after_ended")
        done += apply_results(factory, provider, settings, batch)
    return done


def give_up_lost(
    factory: sessionmaker[Session], settings: Settings, *, now: datetime | None = None
) -> int:
    """Give up the "submitting" batches older than `stale_submit_s` (their create never came
    back) and hand their records back. Beat's sweep calls it too: a batches run busy with a
    big apply or a slow create must not hold a dead submit's records past the bound.
    Returns how many batches it gave up."""
    stale = (now or utcnow()) - timedelta(seconds=stale_submit_s(settings))
    with factory() as s:
        lost = s.scalars(
            select(Batch.id).where(Batch.status == SUBMITTING, Batch.created_at < stale)
        ).all()
    for batch_id in lost:
        handed = hand_back_all(factory, settings, batch_id, GIVEN_UP, error="create unconfirmed")
        log.warning("batch.given_up", batch=batch_id, handed=handed)
    return len(lost)


def stale_submit_s(settings: Settings) -> float:
    """How old a "submitting" batch is when it is given up (its create never confirmed):
    `batches.stale_submit_s` (600 s), capped so that its records, on the batch lease since
    the batch was stored, come free within one sweep interval plus a chain's lease, as a
    killed chain's would, counting the batches run's own interval (the give-up waits for
    the next run). The defaults are within it (600 + 60 <= 60 + 360 + 600); the cap matters
    for short leases (the drill's: 2 + 5 + 90). A create still in flight when its batch is
    given up is cancelled when it returns (submit._cancel_late)."""
    bound = settings.sweep_interval_s + chain_lease_s(settings) - settings.batches.interval_s
    return max(0.0, min(settings.batches.stale_submit_s, bound))


def _ended(
    factory: sessionmaker[Session], provider: AnthropicProvider, settings: Settings, batch: Batch
) -> bool:
    """Retrieve the batch, store its counts; True once it has ended."""
    try:
        remote = provider.retrieve_batch(batch.provider_batch_id)
    except EnrichmentError as error:
        log.warning("batch.poll_failed", batch=batch.id, error=str(error))
        return False
    counts = remote.request_counts
    ended = remote.processing_status == "ended"
    with factory.begin() as s:
        s.execute(
            update(Batch)
            .where(Batch.id == batch.id, Batch.tenant_id == batch.tenant_id)
            .values(
                succeeded=counts.succeeded,
                errored=counts.errored,
                expired=counts.expired,
                canceled=counts.canceled,
                **({"status": ENDED, "ended_at": remote.ended_at or utcnow()} if ended else {}),
            )
        )
    return ended


def apply_results(
    factory: sessionmaker[Session], provider: AnthropicProvider, settings: Settings, batch: Batch
) -> Counter[str]:
    """Apply every result not applied yet; a record without a result line is handed back."""
    with factory() as s:
        engine = s.get_bind()
        waiting = {
            r.custom_id: r
            for r in s.scalars(
                select(BatchRecord).where(
                    BatchRecord.batch_id == batch.id,
                    BatchRecord.tenant_id == batch.tenant_id,
                    BatchRecord.applied_at.is_(None),
                )
            )
        }
    done: Counter[str] = Counter()
    if waiting:
        try:
            results = provider.batch_results(batch.provider_batch_id)
        except EnrichmentError as error:  # the rest waits for the next run
            log.warning("batch.results_failed", batch=batch.id, error=str(error))
            return done
        for result in results:
            rec = waiting.pop(result.custom_id, None)
            if rec is not None:
                done[apply_one(engine, provider, settings, batch, rec, result)] += 1
                crash_point("batch_apply.between_results")
    done["no_result"] += hand_back_all(factory, settings, batch.id, APPLIED)
    log.info("batch.applied", batch=batch.id, stage=batch.stage, **done)
    return done


def apply_one(
    engine: Engine,
    provider: AnthropicProvider,
    settings: Settings,
    batch: Batch,
    rec: BatchRecord,
    result: BatchResult,
) -> str:
    """One result, in one transaction with its `applied_at`: the chain's outcome code for
    succeeded and errored; expired and canceled hand the record back. Returns the kind."""
    with engine.begin() as conn:
        if not mark_applied(conn, rec):
            return "already"
        if result.type in ("expired", "canceled"):
            return result.type if hand_back(conn, settings, batch.stage, rec) else "stale"
        resumed = pipeline.resume_stage(
            conn, settings, batch.stage, rec.record_id, rec.lease_token, rec.started_at
        )
        if resumed is None:
            return "stale"
        run, ctx = resumed
        call: Any
        if result.type == "succeeded":
            try:
                call = provider.answer(run.stage.call, ctx, result.message, batch=True)
            except EnrichmentError as exc:
                call = exc
        else:
            call = result.error  # errored: the stage failure, with its cause
            call.model = batch.model  # the breaker counts per model
        # No latency: no worker waited. The batch's turnaround is in `batches`.
        key = breaker_store.key_for(settings, batch.model)
        seen = breaker_store.gate(conn, key)
        outcome, attempt = finish_stage(
            run, settings, call, 0.0, provider.name, breaker_cause=seen.cause
        )
        if outcome.kind in (OutcomeKind.CONTINUE, OutcomeKind.RETRY):
            # No chain goes on from here: the next sweep or batch takes the record when due.
            run.writes.update(released())
        attempt["batch_id"] = batch.id
        if not stage_write.write(conn, run, attempt):
            return "stale"
    breaker_store.learn(engine, settings, key, seen, attempt)
    pipeline.log_landed(run)
    return outcome.kind
