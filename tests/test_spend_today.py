"""Today's spend carried from the previous snapshot (metrics/spend_today.py), on PostgreSQL:
the carried figure equals the day's sum, a new day starts from zero, another tenant's
attempts never count, and after a snapshot of today the pass no longer reads from midnight."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from enrichment.core.models import EnrichmentAttempt
from enrichment.core.settings import MonitorConfig
from enrichment.metrics import spend_today
from enrichment.metrics.monitor import run_monitor
from tests.factories import make_record, make_tenant

CONFIG = MonitorConfig(window_s=3600.0)
NOON = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def attempt(s, rec, at: datetime, cost: float) -> None:
    s.add(
        EnrichmentAttempt(
            tenant_id=rec.tenant_id, record_id=rec.id, stage="classification",
            outcome="completed", latency_s=1.0, provider="local", cost_usd=cost,
            lease_token="t", created_at=at,
        )
    )  # fmt: skip


def spend(factory, settings, now: datetime, name: str = "a-3pl") -> float:
    snaps = run_monitor(factory, settings, now=now, config=CONFIG)
    return next(s.spend_today_usd for s in snaps if s.tenant == name)


def day_sum(factory, tenant_id: int, now: datetime) -> float:
    A = EnrichmentAttempt
    with factory() as s:
        return s.scalar(
            select(func.coalesce(func.sum(A.cost_usd), 0.0)).where(
                A.tenant_id == tenant_id,
                A.created_at >= spend_today.midnight(now),
                A.created_at <= now,
            )
        )


def test_carried_spend_equals_the_days_sum_and_restarts_at_midnight(factory, settings):
    with factory.begin() as s:
        a, b = make_tenant(s, "a-3pl"), make_tenant(s, "b-3pl")
        rec, other = make_record(s, a), make_record(s, b)
        attempt(s, rec, NOON - timedelta(hours=13), 1.0)  # yesterday
        attempt(s, rec, NOON - timedelta(hours=11), 0.5)  # today, long before the window
        attempt(s, rec, NOON - timedelta(minutes=30), 0.25)
        attempt(s, other, NOON - timedelta(minutes=5), 100.0)  # another tenant's
        a_id = a.id
    assert spend(factory, settings, NOON) == pytest.approx(0.75)

    later = NOON + timedelta(minutes=20)
    with factory.begin() as s:
        attempt(s, s.merge(rec), NOON + timedelta(minutes=10), 0.125)
    # Carried: 0.75 from the noon snapshot plus the 0.125 since, though the pass now starts
    # at the window (11:20), after the 0.5 of 01:00.
    assert spend_today.scan_from(later - timedelta(hours=1), NOON, later) == later - timedelta(
        hours=1
    )
    assert spend(factory, settings, later) == pytest.approx(0.875)
    assert spend(factory, settings, later) == pytest.approx(day_sum(factory, a_id, later))

    next_day = datetime(2026, 3, 11, 0, 30, tzinfo=UTC)
    with factory.begin() as s:
        attempt(s, s.merge(rec), next_day - timedelta(minutes=20), 2.0)
    # The previous snapshot is yesterday's: nothing carried, the pass reads from midnight.
    assert not spend_today.carried(later, next_day)
    assert spend(factory, settings, next_day) == pytest.approx(2.0)
    assert spend(factory, settings, next_day + timedelta(minutes=5)) == pytest.approx(2.0)


def test_scan_from_reaches_midnight_only_when_not_carried():
    now = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
    window_start = now - timedelta(hours=1)
    prev_today = now - timedelta(minutes=5)
    prev_yesterday = now - timedelta(hours=10)
    assert spend_today.scan_from(window_start, prev_today, now) == window_start
    assert spend_today.scan_from(window_start, prev_yesterday, now) == prev_yesterday
    naive = (now - timedelta(hours=3)).replace(tzinfo=None)  # SQLite gives naive UTC back
    assert spend_today.scan_from(window_start, naive, now) == now - timedelta(hours=3)
