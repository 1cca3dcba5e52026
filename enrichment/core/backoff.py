"""Retry schedules as pure functions: retry number in, seconds out.

A schedule is a table of steps: retry n (1-based) waits steps[n - 1] x scale seconds, and
retries past the table wait its last step (the cap). Jitter rule: each delay is the step
times a uniform factor in [1 - jitter, 1 + jitter] (jitter 0.1 by default), so retry n never
fires before 90% or after 110% of its step and simultaneous failures spread out.

This module holds the record's schedule; webhook delivery keeps its own table of steps
(`enrichment.delivery.backoff.STEPS_S`) and passes it here.
"""

from __future__ import annotations

import random
from collections.abc import Callable

# A record's retry n waits RETRY_STEPS_S[n - 1] seconds: 1m, 5m, 15m, 1h, 4h.
RETRY_STEPS_S: tuple[float, ...] = (60.0, 300.0, 900.0, 3600.0, 14_400.0)
JITTER = 0.1


def step_s(
    retry_number: int, *, steps: tuple[float, ...] = RETRY_STEPS_S, scale: float = 1.0
) -> float:
    """The un-jittered wait before retry `retry_number` (1-based; later numbers: the cap)."""
    if retry_number < 1:
        raise ValueError(f"retry_number starts at 1, got {retry_number}")
    return steps[min(retry_number, len(steps)) - 1] * scale


def retry_delay_s(
    retry_number: int,
    *,
    steps: tuple[float, ...] = RETRY_STEPS_S,
    scale: float = 1.0,
    jitter: float = JITTER,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry `retry_number` of the schedule `steps`, jittered."""
    return step_s(retry_number, steps=steps, scale=scale) * (1.0 + jitter * (2.0 * rand() - 1.0))


def delay_bounds_s(
    retry_number: int,
    *,
    steps: tuple[float, ...] = RETRY_STEPS_S,
    scale: float = 1.0,
    jitter: float = JITTER,
) -> tuple[float, float]:
    """The smallest and largest delay `retry_delay_s` can return for this retry."""
    base = step_s(retry_number, steps=steps, scale=scale)
    return base * (1.0 - jitter), base * (1.0 + jitter)


def total_wait_s(
    attempts: int, *, steps: tuple[float, ...] = RETRY_STEPS_S, scale: float = 1.0
) -> float:
    """The un-jittered wait from the first try to the last of `attempts` tries."""
    return sum(step_s(n, steps=steps, scale=scale) for n in range(1, attempts))
