"""A tenant's AI spend since 00:00 UTC today, carried from its previous snapshot.

Summing today's attempts on every monitor run reads all of them: at 1M records a day that is
up to 3M attempts by the evening, read again every interval (P3 at scale, docs/benchmarks.md).
The previous snapshot already holds the spend up to its `taken_at`; when that is today, the
spend now is it plus the cost of the attempts since (the same delta the cumulative counters
add, `monitor._totals`), so the attempt pass reads only from the earlier of the window start
and the previous snapshot. The first run of a day (or the first ever) still sums the day.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from enrichment.core.monitor_models import MetricSnapshot


def midnight(now: datetime) -> datetime:
    """00:00 UTC of `now`'s day."""
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def carried(since_prev: datetime | None, now: datetime) -> bool:
    """Whether today's spend comes from the previous snapshot (taken today) plus the delta."""
    return since_prev is not None and _aware(since_prev) >= midnight(now)


def scan_from(window_start: datetime, since_prev: datetime, now: datetime) -> datetime:
    """The attempt pass's lower bound after a previous snapshot: the window's start and the
    delta's, and midnight unless today's spend is carried."""
    if carried(since_prev, now):
        return min(window_start, _aware(since_prev))
    return min(window_start, _aware(since_prev), midnight(now))


def spend_today(prev: MetricSnapshot | None, ac: dict[str, Any], now: datetime) -> float:
    """Today's spend: the previous snapshot's plus the cost since it, or the pass's own sum."""
    if prev is not None and carried(prev.taken_at, now):
        return float(prev.spend_today_usd or 0.0) + float(ac["d_cost"])
    return float(ac["today"])


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
