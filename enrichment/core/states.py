"""Pure decisions about a record's enrichment state: no I/O, tested without services."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from enrichment.core.backoff import retry_delay_s
from enrichment.core.stages import STAGES, Stage

MAX_ERRORS_KEPT = 20


class StageStatus(StrEnum):
    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


def stage_status(state: dict[str, Any], stage: Stage) -> StageStatus:
    return StageStatus(state.get(stage, {}).get("status", StageStatus.PENDING))


def with_stage(
    state: dict[str, Any],
    stage: Stage,
    status: StageStatus,
    *,
    at: datetime,
    error: str | None = None,
) -> dict[str, Any]:
    """A copy of `state` with one stage moved to `status` (errors are appended, capped)."""
    new = {**state, stage: {"status": str(status), "at": at.isoformat()}}
    if error is not None:
        new[stage]["error"] = error
        errors = [*state.get("errors", []), f"{at.isoformat()} {stage}: {error}"]
        new["errors"] = errors[-MAX_ERRORS_KEPT:]
    return new


def needs_run(state: dict[str, Any], stage: Stage, *, confident: bool) -> bool:
    """A COMPLETED stage is not paid for again, except a low-confidence classification,
    which is exactly what a recheck is for."""
    if stage_status(state, stage) != StageStatus.COMPLETED:
        return True
    return stage == Stage.CLASSIFY and not confident


def next_stage(state: dict[str, Any], *, confident: bool) -> Stage | None:
    """The first stage the record still needs, in chain order; None when none does."""
    return next((s for s in STAGES if needs_run(state, s, confident=confident)), None)


def is_confident(confidence: float | None, threshold: float) -> bool:
    return confidence is not None and confidence >= threshold


def next_failure_step(
    retry_count: int, *, max_retries: int, now: datetime, scale: float, jitter: float
) -> tuple[int, datetime] | None:
    """After a failure: (new retry count, next attempt time), or None when retries are used up."""
    if retry_count >= max_retries:
        return None
    n = retry_count + 1
    return n, now + timedelta(seconds=retry_delay_s(n, scale=scale, jitter=jitter))
