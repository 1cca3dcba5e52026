"""The provider breaker's rules, as pure functions: state in, new state out.

One breaker per provider and model, shared by every worker and beat process (its row lives
in `provider_breakers`: breaker_store.py says why the database).

    closed --(a hard fault, or a failure ratio over a minimum volume)--> open
    open --(the probe interval passed; the sweep claims ONE record as the probe)--> half_open
    half_open --(the probe's stage succeeded)--> closed, ramping back up
    half_open --(the probe met a fleet fault, or never answered)--> open, longer interval

While open or half-open, no claim feeds the provider (sweep, Message Batches), and a stage
already in flight does not call it (but the probe's); each gives its lease back with its
retry count as it was. The probe is a real stage of a real due record, so "healthy" means a
real request works (a synthetic ping would pass while a broken request shape still fails).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from enrichment.core.faults import HARD, RATIO
from enrichment.core.settings_sections import BreakerConfig

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
# /metrics' enrichment_provider_breaker_state values.
STATE_VALUE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


@dataclass(frozen=True)
class Breaker:
    """One provider and model's breaker. probe_at: when the next probe may be taken (open),
    or when the probe in flight counts as lost (half_open). closed_at: the last close, from
    which the sweep's claim ramps back up."""

    provider: str
    model: str
    state: str = CLOSED
    cause: str | None = None
    opened_at: datetime | None = None
    probe_at: datetime | None = None
    probe_interval_s: float = 0.0
    probe_record_id: int | None = None
    closed_at: datetime | None = None

    @property
    def is_closed(self) -> bool:
        return self.state == CLOSED


def on_fault(
    b: Breaker, cause: str, faults: int, calls: int, now: datetime, cfg: BreakerConfig
) -> Breaker:
    """After a fleet fault (or a 400) of cause `cause`, with `faults` of `calls` calls in the
    window failing for a ratio cause. A hard cause opens at once; a ratio cause once the
    window holds at least `min_calls` calls and `failure_ratio` of them failed. A fault met
    by the probe (half-open) opens again with the probe interval doubled."""
    if b.state == HALF_OPEN:
        return _open(b, cause, now, min(b.probe_interval_s * 2, cfg.probe_max_s))
    if b.state == OPEN:
        return b
    tripped = cause in HARD or (
        cause in RATIO and calls >= cfg.min_calls and faults >= cfg.failure_ratio * calls
    )
    return _open(b, cause, now, cfg.probe_initial_s) if tripped else b


def _open(b: Breaker, cause: str, now: datetime, interval_s: float) -> Breaker:
    return replace(
        b,
        state=OPEN,
        cause=cause,
        opened_at=b.opened_at if b.state != CLOSED else now,
        probe_at=now + timedelta(seconds=interval_s),
        probe_interval_s=interval_s,
        probe_record_id=None,
    )


def take_probe(b: Breaker, record_id: int, now: datetime) -> Breaker | None:
    """The breaker with `record_id` as its probe (half-open), or None when no probe is due.
    A probe that never answered (its worker died, its message was lost) counts as lost at
    `probe_at`, and the next one may be taken then."""
    if b.state == CLOSED or b.probe_at is None or now < b.probe_at:
        return None
    interval_s = b.probe_interval_s
    return replace(
        b,
        state=HALF_OPEN,
        probe_record_id=record_id,
        probe_at=now + timedelta(seconds=interval_s),
    )


def on_success(b: Breaker, now: datetime) -> Breaker:
    """After a stage that got a usable answer: the probe's closes the breaker."""
    if b.state != HALF_OPEN:
        return b
    return replace(
        b,
        state=CLOSED,
        cause=None,
        opened_at=None,
        probe_at=None,
        probe_interval_s=0.0,
        probe_record_id=None,
        closed_at=now,
    )


def admits(b: Breaker, record_id: int) -> bool:
    """Whether a stage of `record_id` may call the provider now."""
    return b.state == CLOSED or (b.state == HALF_OPEN and b.probe_record_id == record_id)


def ramp_limit(b: Breaker, now: datetime, interval_s: float, floor: int) -> int | None:
    """The most a sweep may claim while the fleet ramps back up after a close: `floor`,
    doubling every sweep interval, so a big backlog does not hit a provider that has just
    recovered all at once; None once the ramp is past (or there was none)."""
    if b.state != CLOSED or b.closed_at is None:
        return None
    intervals = max(0.0, (now - b.closed_at).total_seconds()) / interval_s
    if intervals >= 12:  # 2**12 x the floor: past any sweep batch
        return None
    return floor * 2 ** int(intervals)
