"""The webhook retry schedule: a table of steps for `enrichment.core.backoff.retry_delay_s`.

After the n-th failed POST (429, 5xx, a timeout, a dropped connection) the next one waits
STEPS_S[n - 1] x scale x uniform[1 - jitter, 1 + jitter]: 1m, 5m, 30m, 1h, 3h, 6h, 12h,
about 23 h before the 8th and last attempt (ENRICHMENT_WEBHOOK_MAX_ATTEMPTS). The wait is
stored in `outbox_events.next_delivery_at`, never held by the broker as a countdown.
"""

from __future__ import annotations

STEPS_S: tuple[float, ...] = (60.0, 300.0, 1800.0, 3600.0, 10_800.0, 21_600.0, 43_200.0)
