"""The webhook retry schedule as pure functions: failed attempts in, seconds out.

After the n-th failed POST (429, 5xx, a timeout, a dropped connection) the next one waits
RETRY_STEPS_S[n - 1] x scale x uniform[1 - jitter, 1 + jitter]: 1m, 5m, 30m, 1h, 3h, 6h,
12h, about 23 h before the 8th and last attempt (ENRICHMENT_WEBHOOK_MAX_ATTEMPTS). The wait
is stored in `outbox_events.next_delivery_at`, never held by the broker as a countdown.
"""

from __future__ import annotations

import random
from collections.abc import Callable

RETRY_STEPS_S: tuple[float, ...] = (60.0, 300.0, 1800.0, 3600.0, 10_800.0, 21_600.0, 43_200.0)
JITTER = 0.1


def retry_delay_s(
    failed_attempts: int,
    *,
    scale: float = 1.0,
    jitter: float = JITTER,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds before the next POST after `failed_attempts` (1-based; later use the 12 h cap)."""
    if failed_attempts < 1:
        raise ValueError(f"failed_attempts starts at 1, got {failed_attempts}")
    base = RETRY_STEPS_S[min(failed_attempts, len(RETRY_STEPS_S)) - 1] * scale
    return base * (1.0 + jitter * (2.0 * rand() - 1.0))


def total_wait_s(max_attempts: int, *, scale: float = 1.0) -> float:
    """The un-jittered wait from the first POST to the last of `max_attempts`."""
    return sum(
        RETRY_STEPS_S[min(n, len(RETRY_STEPS_S)) - 1] * scale for n in range(1, max_attempts)
    )
