"""Time to a person: how long an undecided record may wait, by severity, before it is in the
review queue. Pure decisions, tested without services.

A record's limit runs from its ingestion (`created_at`): the tenant's
`time_to_person_s[severity]`, else ENRICHMENT_REVIEW_WITHIN_S_<SEVERITY>. It shapes a record's
next try in two ways (core/outcomes.py applies them):

- A low-confidence recheck waits min(the normal recheck, time left ÷ (rechecks left + 1)):
  recomputed at each recheck, the rechecks fall evenly over the limit and the last one still
  leaves a gap for the record to reach a person in time. When that gap is under
  MIN_RECHECK_S the record is escalated now.
- A failure keeps its own backoff, but a retry that would land past the limit is not
  scheduled: the record is escalated now. So is a record whose stage meets a fleet fault
  (an outage) once its limit has passed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from enrichment.core.settings_sections import ReviewConfig

SEVERITIES = ("low", "medium", "high", "critical")
# Closer than this, a recheck is a retry storm, not a second look: the record goes to a person.
MIN_RECHECK_S = 1.0
# A Message Batch may hold a record this long (the API's limit; most end within the hour).
BATCH_WINDOW_S = 86_400.0


def limit_s(severity: str, own: Mapping[str, float], reviews: ReviewConfig) -> float:
    """Seconds an undecided record of `severity` may wait for a person: the tenant's own
    value (`own`, its time_to_person_s), else the fleet's. An unknown severity is medium."""
    known = severity if severity in SEVERITIES else "medium"
    return own.get(known) or getattr(reviews, f"within_s_{known}")


def deadline(created_at: datetime, limit: float) -> datetime:
    """When a record ingested at `created_at` must be with a person."""
    return created_at + timedelta(seconds=limit)


def recheck_at(
    now: datetime, due_by: datetime, *, normal_at: datetime, rechecks_left: int
) -> datetime | None:
    """When a low-confidence record is classified again, or None: escalate it now.
    normal_at: the recheck without a limit; rechecks_left: counting this one (>= 1)."""
    gap_s = (due_by - now).total_seconds() / (rechecks_left + 1)
    if gap_s < MIN_RECHECK_S:
        return None
    return min(normal_at, now + timedelta(seconds=gap_s))


def too_late(next_at: datetime, due_by: datetime) -> bool:
    """A next try at `next_at` would leave the record without a person past its limit."""
    return next_at > due_by


def goes_by_batch(limit: float) -> bool:
    """A record may wait in a Message Batch only if its limit is at least the batch window."""
    return limit >= BATCH_WINDOW_S


def short_severities(own: Mapping[str, float], reviews: ReviewConfig) -> list[str]:
    """The severities whose records never go by Message Batch for this tenant."""
    return [s for s in SEVERITIES if not goes_by_batch(limit_s(s, own, reviews))]


def words(limit: float) -> str:
    """A limit as a person says it: "15 min", "4 h", "2 d", "90 s"."""
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60)):
        if limit >= size and limit % size == 0:
            return f"{int(limit // size)} {unit}"
    return f"{limit:g} s"


def unsure_reason(severity: str, threshold: float, limit: float) -> str:
    """The escalation reason of a record whose rechecks ran out of time (groupable text)."""
    return (
        f"{severity} record: confidence stayed below {threshold} and its {words(limit)}"
        " to a person ran out"
    )


def failing_reason(severity: str, limit: float, error: str) -> str:
    """The escalation reason of a failing record whose next retry would pass its limit."""
    return f"{severity} record: its {words(limit)} to a person ran out before a retry; {error}"
