"""INFO notices: early signs shown on the report page and in the health route's `notices`,
never pushed to any channel (routing's INFO route is empty and cannot be changed).

    failure_trend_info  the failure rate rose by 5 points or more over the monitor window
                        (needs min_sample attempts in the window, like failure_rate_critical)
    queue_age_info      the wait of the oldest record due for enrichment grew by 300 s or more
                        over the window, and is at least that long now
    budget_info         today's AI spend reached 80 % of the tenant's daily_budget_usd

A trend is the rise of the least-squares line through the window's stored snapshots and the
live figure, across their span: at least 3 points over at least 10 min, so one noisy
snapshot does not make a trend. A tenant tunes each threshold by its name in
tenants.settings["alert_thresholds"] (points, seconds, percent). A notice gives way to a
crossed threshold of the same metric: the status already says more.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from enrichment.core.monitor_models import MetricSnapshot
from enrichment.core.settings import Settings
from enrichment.core.tenant_settings import TenantSettings
from enrichment.core.text import duration

MIN_POINTS = 3
MIN_SPAN_S = 600.0
DEFAULTS = {"failure_trend_info": 5.0, "queue_age_info": 300.0, "budget_info": 80.0}
# The alert metric whose crossed threshold supersedes each notice.
METRIC = {"failure_trend_info": "failure_rate", "queue_age_info": "starvation",
          "budget_info": "budget"}  # fmt: skip


class Notice(BaseModel):
    """One early sign, for information only."""

    name: str = Field(description="e.g. failure_trend_info; tenants tune it by this name")
    severity: Literal["info"] = "info"
    metric: str
    words: str = Field(description="what is happening, in plain words")
    value: float = Field(description="the rise (points or seconds) or the budget share (%)")
    threshold: float


class Point(BaseModel):
    """What a trend reads from one snapshot (stored, or the live measurement)."""

    taken_at: datetime
    failure_rate_pct: float | None
    window_attempts: int
    oldest_due_age_s: float | None
    spend_today_usd: float = 0.0


def points(session: Session, tenant_id: int, *, since: datetime, until: datetime) -> list[Point]:
    """The tenant's stored snapshots in [since, until), oldest first (one indexed range)."""
    S = MetricSnapshot
    rows = session.execute(
        select(S.taken_at, S.failure_rate_pct, S.window_attempts, S.oldest_due_age_s)
        .where(S.tenant_id == tenant_id, S.taken_at >= since, S.taken_at < until)
        .order_by(S.taken_at)
    ).all()
    return [Point.model_validate(r, from_attributes=True) for r in rows]


def rise(series: Sequence[tuple[datetime, float]]) -> tuple[float, float] | None:
    """(rise, span_s) of the least-squares line across the series' span, or None when there
    are too few points or too short a span to call it a trend."""
    if len(series) < MIN_POINTS:
        return None
    xs = [(t - series[0][0]).total_seconds() for t, _ in series]
    span = xs[-1] - xs[0]
    if span < MIN_SPAN_S:
        return None
    mx, my = sum(xs) / len(xs), sum(v for _, v in series) / len(series)
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (v - my) for x, (_, v) in zip(xs, series, strict=True))
    return sxy / sxx * span, span


def find(
    live: Point,
    stored: list[Point],
    tenant_settings: dict[str, Any],
    *,
    min_sample: int,
    crossed: set[str],
) -> list[Notice]:
    """The notices for one tenant: the live point, the window's stored points (oldest
    first), and the metrics whose thresholds are crossed now."""
    limits = _limits(tenant_settings)
    found = [
        _failure_trend(live, stored, limits["failure_trend_info"], min_sample),
        _queue_age(live, stored, limits["queue_age_info"]),
        _budget(live.spend_today_usd, tenant_settings, limits["budget_info"]),
    ]
    return [n for n in found if n is not None and n.metric not in crossed]


def _limits(tenant_settings: dict[str, Any]) -> dict[str, float]:
    own = TenantSettings.parse(tenant_settings).alert_thresholds
    out = {}
    for name, default in DEFAULTS.items():
        value = own.get(name)
        out[name] = value if value is not None and value > 0 else default
    return out


def _failure_trend(live: Point, stored: list[Point], limit: float, min_sample: int):
    if live.failure_rate_pct is None or live.window_attempts < min_sample:
        return None
    series = [(p.taken_at, p.failure_rate_pct) for p in (*stored, live)
              if p.failure_rate_pct is not None and p.window_attempts >= min_sample]  # fmt: skip
    fit = _rising(series, limit)
    if fit is None:
        return None
    words = (
        f"failure rate of AI attempts rising: up {fit[0]:.1f} points over the last "
        f"{duration(fit[1])}, now {live.failure_rate_pct:.1f} %"
    )
    return _notice("failure_trend_info", words, fit[0], limit)


def _queue_age(live: Point, stored: list[Point], limit: float):
    now_age = live.oldest_due_age_s or 0.0
    if now_age < limit:
        return None
    fit = _rising([(p.taken_at, p.oldest_due_age_s or 0.0) for p in (*stored, live)], limit)
    if fit is None:
        return None
    words = (
        f"wait of the oldest record due for enrichment growing: up {duration(fit[0])} over "
        f"the last {duration(fit[1])}, now {duration(now_age)}"
    )
    return _notice("queue_age_info", words, fit[0], limit)


def _budget(spend: float, tenant_settings: dict[str, Any], limit: float):
    budget = TenantSettings.parse(tenant_settings).daily_budget_usd
    if not budget or budget <= 0:
        return None
    share = 100.0 * spend / budget
    if not limit <= share < 100.0:  # at 100 % the budget_warning fires instead
        return None
    words = (
        f"AI spend today at {share:.0f} % of the daily budget "
        f"(${spend:,.2f} of ${budget:,.2f}; at 100 % the tenant waits for the next UTC day)"
    )
    return _notice("budget_info", words, share, limit)


def _rising(series: Sequence[tuple[datetime, float]], limit: float):
    """The series' rise and span (`rise`) when it rose by at least `limit`, else None."""
    fit = rise(series)
    return fit if fit is not None and fit[0] >= limit else None


def _notice(name: str, words: str, value: float, threshold: float) -> Notice:
    return Notice(name=name, metric=METRIC[name], words=words, value=value, threshold=threshold)


def for_snapshot(
    session: Session, snap: Any, tenant_settings: dict[str, Any], settings: Settings, *,
    crossed: set[str],
) -> list[Notice]:  # fmt: skip
    """The notices for a live snapshot, against the stored ones of the monitor window
    before it; `crossed`: the metrics whose thresholds the snapshot crosses."""
    since = snap.taken_at - timedelta(seconds=settings.monitor.window_s)
    stored = points(session, snap.tenant_id, since=since, until=snap.taken_at)
    live = Point.model_validate(snap, from_attributes=True)
    return find(live, stored, tenant_settings, min_sample=settings.alerts.min_sample,
                crossed=crossed)  # fmt: skip
