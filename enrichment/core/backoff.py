"""The retry schedule as pure functions: retry number in, seconds out.

Jitter rule: each delay is the base step times a uniform factor in
[1 - jitter, 1 + jitter] (jitter 0.1 by default), so retry n never fires before
90% or after 110% of its step and simultaneous failures spread out.
"""

from __future__ import annotations

import random
from collections.abc import Callable

# Retry n (1-based) waits RETRY_STEPS_S[n - 1] seconds: 1m, 5m, 15m, 1h, 4h.
RETRY_STEPS_S: tuple[float, ...] = (60.0, 300.0, 900.0, 3600.0, 14_400.0)


def retry_delay_s(
    retry_number: int,
    *,
    scale: float = 1.0,
    jitter: float = 0.1,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry `retry_number` (1..5; later numbers use the 4h cap)."""
    if retry_number < 1:
        raise ValueError(f"retry_number starts at 1, got {retry_number}")
    base = RETRY_STEPS_S[min(retry_number, len(RETRY_STEPS_S)) - 1] * scale
    return base * (1.0 + jitter * (2.0 * rand() - 1.0))


def delay_bounds_s(
    retry_number: int, *, scale: float = 1.0, jitter: float = 0.1
) -> tuple[float, float]:
    """The smallest and largest delay `retry_delay_s` can return for this retry."""
    base = RETRY_STEPS_S[min(retry_number, len(RETRY_STEPS_S)) - 1] * scale
    return base * (1.0 - jitter), base * (1.0 + jitter)
