"""The claim's rules as pure functions: which records go first, each tenant's share, sweep size.

The claim in four modules: due (the words) -> scheduling (the pure rules) -> demand (each
tenant's inputs, read) -> selection (the claim itself, the one entry point).

Order inside a tenant: severity, then the record's `priority` (0-100, given at ingest: e.g.
order value or the SLA at risk), then due time, with aging. All three fold into one
timestamp, `sched_at` = `next_attempt_at` - boost(severity) - boost(priority), and the claim
takes the earliest `sched_at` first. Boosts: critical 60 min, high 20 min, medium 5 min, low
0; priority p adds p x 36 s (up to 60 min). The rule that follows: a record is never passed
by one that became due more than 2 hours after it (the largest total boost), so priority
never starves anything; aging is the clock itself.

Shares across tenants: `fair_shares`, weighted water-filling, recomputed by every claim from
what is due now; the claim then walks each tenant's index (one LATERAL per tenant) for its
share. Chosen over deficit round robin because a claim takes a whole batch at once: DRR
hands out one item per turn and needs deficit counters kept between claims (state to store,
lock and repair), while water-filling gives the same weighted split of one batch with no
state, and a tenant's spare share is handed on within the same claim. Fairness over time
comes from the order of the leftover seats: the tenant whose head record has waited
longest gets them first, so a tenant left out of a small claim is first in the next.

Limits (a tenant's settings, read through tenant_settings.TenantSettings): "weight"
(default 1), "max_in_flight" (leased records at once), "daily_budget_usd" (AI spend per UTC
day; at the budget a tenant's records wait). How much one sweep claims: `sweep_size`
(selection.py says why).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from fractions import Fraction

from enrichment.core.stages import STAGES_PER_RECORD

SEVERITY_BOOST_S = {"critical": 3600.0, "high": 1200.0, "medium": 300.0, "low": 0.0}
PRIORITY_STEP_S = 36.0  # per priority point: priority 100 = one hour
MAX_PRIORITY = 100


def boost_s(severity: str, priority: int | None) -> float:
    """How much earlier than its due time a record counts, in seconds."""
    p = min(max(priority or 0, 0), MAX_PRIORITY)
    return SEVERITY_BOOST_S.get(severity, 0.0) + p * PRIORITY_STEP_S


def sched_at(next_attempt_at: datetime, severity: str, priority: int | None) -> datetime:
    """The record's place in its tenant's order: its due time minus its boost."""
    return next_attempt_at - timedelta(seconds=boost_s(severity, priority))


def fair_shares(
    size: int,
    demand: Mapping[int, int],
    weights: Mapping[int, float],
    *,
    precedence: Sequence[int] = (),
) -> dict[int, int]:
    """Divide `size` claims among tenants by weight, capped by each tenant's demand.

    Weighted water-filling: every tenant is offered batch x w / W; a tenant that wants less
    takes its demand and its spare is offered again to the rest, until nobody is capped.
    The shares sum to min(size, total demand). Fractions are settled by largest
    remainder; ties go to the tenant earlier in `precedence` (the claim passes the tenants
    whose head record has waited longest first, so the tenants left out of a small claim
    are first next time), then the lower tenant id. A missing weight counts as 1.
    """
    open_ = {t: n for t, n in demand.items() if n > 0}
    shares = dict.fromkeys(demand, 0)
    left = min(size, sum(open_.values()))
    while open_ and left > 0:
        offer = _offers(left, open_, weights)
        full = [t for t, n in open_.items() if n <= offer[t]]
        if not full:
            _settle(shares, offer, left, _rank(precedence))
            break
        for t in full:
            shares[t], left = open_[t], left - open_.pop(t)
    return shares


def _offers(left: int, open_: Mapping[int, int], weights: Mapping[int, float]) -> dict:
    """Each open tenant's exact (Fraction) part of `left`, by weight."""
    w = {t: Fraction(weights.get(t, 1.0)) for t in open_}
    total = sum(w.values())
    return {t: left * w[t] / total for t in open_}


def _settle(shares: dict[int, int], offer: Mapping[int, Fraction], left: int, rank) -> None:
    """Whole parts first, then one more each by largest remainder until `left` is used."""
    for t, part in offer.items():
        shares[t] = math.floor(part)
    spare = left - sum(math.floor(p) for p in offer.values())
    by_remainder = sorted(offer, key=lambda t: (-(offer[t] - math.floor(offer[t])), rank(t)))
    for t in by_remainder[:spare]:
        shares[t] += 1


def _rank(precedence: Sequence[int]):
    place = {t: i for i, t in enumerate(precedence)}
    return lambda t: (place.get(t, len(place)), t)


def claimable_demand(
    due: int, *, leased: int, max_in_flight: int | None, spent_usd: float, budget_usd: float | None
) -> int:
    """What a tenant may be given now: its due records, within its in-flight cap, and none
    once today's spend reached its budget (its records just wait: no failure, no retry)."""
    if budget_usd is not None and spent_usd >= budget_usd:
        return 0
    if max_in_flight is not None:
        due = min(due, max(0, max_in_flight - leased))
    return due


def utc_day(now: datetime) -> tuple[datetime, datetime]:
    """The UTC day holding `now`: [start, end). Budgets reset at its end."""
    start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def sweep_size(
    completed_attempts: int,
    in_flight: int,
    *,
    interval_s: float,
    headroom: float,
    floor: int,
    ceiling: int,
    window_s: float = 60.0,
) -> int:
    """How many records one sweep claims: what the fleet starts in about one interval.

    Records per second ~ completed attempts in the last `window_s` / stages per record /
    `window_s`. The target is that rate x `interval_s` x `headroom`, less what is already in
    flight (leased, not expired: on the broker or running), kept within [floor, ceiling]
    (ceiling wins). The floor keeps a cold fleet (no recent attempts) moving; a fleet that
    keeps up finishes what it was given, so the next sweep claims `headroom` times more: the
    claim grows geometrically until the workers, not the sweep, are the limit.
    """
    per_s = completed_attempts / STAGES_PER_RECORD / window_s
    target = math.ceil(per_s * interval_s * headroom) - in_flight
    return max(1, min(ceiling, max(floor, target)))
