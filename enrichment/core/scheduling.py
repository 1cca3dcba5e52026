"""The claim's order and shares, as pure functions: which records go first, and how many
each tenant gets.

Order inside a tenant: severity, then the record's `priority` (0-100, given at ingest: e.g.
order value or the SLA at risk), then due time, with aging. All three fold into one
timestamp, `sched_at` = `next_attempt_at` - boost(severity) - boost(priority), and the claim
takes the earliest `sched_at` first. Boosts: critical 60 min, high 20 min, medium 5 min, low
0; priority p adds p x 36 s (up to 60 min). The rule that follows: a record is never passed
by one that became due more than 2 hours after it (the largest total boost), so priority
never starves anything; aging is the clock itself.

Shares across tenants: `fair_shares` (weighted water-filling).
"""

from __future__ import annotations

from datetime import datetime, timedelta

SEVERITY_BOOST_S = {"critical": 3600.0, "high": 1200.0, "medium": 300.0, "low": 0.0}
PRIORITY_STEP_S = 36.0  # per priority point: priority 100 = one hour
MAX_PRIORITY = 100
MAX_BOOST_S = max(SEVERITY_BOOST_S.values()) + MAX_PRIORITY * PRIORITY_STEP_S


def boost_s(severity: str, priority: int | None) -> float:
    """How much earlier than its due time a record counts, in seconds."""
    p = min(max(priority or 0, 0), MAX_PRIORITY)
    return SEVERITY_BOOST_S.get(severity, 0.0) + p * PRIORITY_STEP_S


def sched_at(next_attempt_at: datetime, severity: str, priority: int | None) -> datetime:
    """The record's place in its tenant's order: its due time minus its boost."""
    return next_attempt_at - timedelta(seconds=boost_s(severity, priority))
