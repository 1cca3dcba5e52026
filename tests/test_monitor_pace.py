"""WARNING speeds up its tenant's monitor: beat ticks every interval / divisor, and each run
evaluates only the tenants due (metrics/cadence.py). Beats are simulated with explicit
clocks against the real database, so the counts are exact."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from beat_schedule import schedule
from enrichment.alerting.dispatch import run_alerts
from enrichment.core.models import ExceptionRecord, Tenant, utcnow
from enrichment.core.monitor_models import Alert, MetricSnapshot
from enrichment.core.settings import (
    ConfigurationError,
    MonitorConfig,
    RoutingConfig,
    get_settings,
)
from enrichment.metrics.cadence import Pace
from enrichment.metrics.monitor import run_monitor
from tests.factories import make_record, make_tenant

TICK = timedelta(seconds=100)  # 300 s / 3


@pytest.fixture
def paced(settings):
    return replace(
        settings, monitor=MonitorConfig(interval_s=300.0), routing=RoutingConfig(warning_divisor=3)
    )


@pytest.fixture
def tenants(factory) -> dict[str, int]:
    """calm-3pl: one enriched record. warned-3pl: one escalated record (escalated_warning
    fires at its first evaluation)."""
    with factory.begin() as s:
        calm, warned = make_tenant(s, "calm-3pl"), make_tenant(s, "warned-3pl")
        make_record(s, calm, enriched_at=utcnow(), ai_label="OTHER", ai_confidence=0.9)
        make_record(s, warned, escalated_at=utcnow())
        return {"calm-3pl": calm.id, "warned-3pl": warned.id}


def tick(factory, settings, now) -> None:
    """One beat tick: the monitor task's body at `now`."""
    snaps = run_monitor(factory, settings, now=now, pace=Pace.of(settings))
    run_alerts(factory, snaps, settings, now=now)


def evaluations(factory, since) -> Counter:
    with factory() as s:
        rows = s.execute(
            select(Tenant.name)
            .join(MetricSnapshot, MetricSnapshot.tenant_id == Tenant.id)
            .where(MetricSnapshot.taken_at >= since)
        ).all()
    return Counter(name for (name,) in rows)


def snapshot_times(factory, tenant_id: int) -> list:
    with factory() as s:
        return s.scalars(
            select(MetricSnapshot.taken_at)
            .where(MetricSnapshot.tenant_id == tenant_id)
            .order_by(MetricSnapshot.taken_at)
        ).all()


def warning_state(factory, tenant_id: int) -> str:
    with factory() as s:
        return s.scalars(
            select(Alert.state).where(Alert.tenant_id == tenant_id, Alert.metric == "escalated")
        ).one()


def test_a_warning_speeds_up_its_tenant_then_the_pace_returns_to_normal(factory, paced, tenants):
    t0 = utcnow()
    for k in range(9):  # 9 ticks over 800 s
        tick(factory, paced, t0 + k * TICK)
    assert warning_state(factory, tenants["warned-3pl"]) == "firing"
    assert evaluations(factory, t0) == {"warned-3pl": 9, "calm-3pl": 3}  # every tick / every 3rd

    with factory.begin() as s:  # a person decides the escalated record: the warning clears
        s.execute(
            update(ExceptionRecord)
            .where(ExceptionRecord.tenant_id == tenants["warned-3pl"])
            .values(escalated_at=None, enriched_at=utcnow())
        )
    t1 = t0 + 9 * TICK
    for k in range(9):
        tick(factory, paced, t1 + k * TICK)
    assert warning_state(factory, tenants["warned-3pl"]) == "inactive"
    # The first run after the fix still saw the warning firing; then every third tick again.
    assert evaluations(factory, t1) == {"warned-3pl": 3, "calm-3pl": 3}


def test_with_divisor_1_a_warning_changes_nothing(factory, paced, tenants):
    flat = replace(paced, routing=RoutingConfig(warning_divisor=1))
    t0 = utcnow()
    for k in range(9):  # ticks every 100 s; the gap is 150 s for both, as before the speed-up
        tick(factory, flat, t0 + k * TICK)
    assert evaluations(factory, t0) == {"warned-3pl": 5, "calm-3pl": 5}


def test_a_second_beat_out_of_phase_evaluates_nothing_more(factory, paced, tenants):
    t0 = utcnow()
    for k in range(9):
        tick(factory, paced, t0 + k * TICK)
        tick(factory, paced, t0 + k * TICK + timedelta(seconds=40))  # beat B, 40 s later
    assert evaluations(factory, t0) == {"warned-3pl": 9, "calm-3pl": 3}


def test_two_beats_at_any_phase_keep_snapshots_half_a_period_apart(factory, paced, tenants):
    t0 = utcnow()
    for k in range(9):
        tick(factory, paced, t0 + k * TICK)
        tick(factory, paced, t0 + k * TICK + timedelta(seconds=60))  # past half a tick
    for name, period in (("warned-3pl", 100.0), ("calm-3pl", 300.0)):
        times = snapshot_times(factory, tenants[name])
        gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
        assert min(gaps) >= period / 2, (name, gaps)
        assert gaps[-2:] == [period, period], (name, gaps)  # steady: once per period
    # Beat B took over (its ticks come first once due) and ticks until 860 s.
    assert evaluations(factory, t0) == {"warned-3pl": 10, "calm-3pl": 4}


def test_two_beats_at_the_same_tick_take_turns(factory, paced, tenants):
    t0 = utcnow()
    with ThreadPoolExecutor(2) as pool:
        for k in range(4):
            both = [t0 + k * TICK] * 2
            list(pool.map(lambda now: tick(factory, paced, now), both))
    assert evaluations(factory, t0) == {"warned-3pl": 4, "calm-3pl": 2}


def test_beat_ticks_at_the_interval_over_the_divisor(paced):
    assert schedule(paced)["monitor"]["schedule"] == 100.0
    assert schedule(paced)["monitor"]["options"] == {"expires": 100.0}
    flat = replace(paced, routing=RoutingConfig(warning_divisor=1))
    assert schedule(flat)["monitor"]["schedule"] == 300.0


def test_the_beat_task_evaluates_only_the_tenants_due(factory, settings, tenants, monkeypatch):
    from workers.tasks import monitor_task

    minute_ago = utcnow() - timedelta(seconds=60)
    run_monitor(factory, settings, now=minute_ago)
    with factory.begin() as s:
        s.add(Alert(tenant_id=tenants["warned-3pl"], metric="escalated", severity="warning",
                    state="firing", active_since=minute_ago))  # fmt: skip
    monkeypatch.setenv("ENRICHMENT_MONITOR_INTERVAL_S", "300")
    monkeypatch.setenv("ENRICHMENT_MONITOR_WARNING_DIVISOR", "3")
    get_settings.cache_clear()
    try:
        assert monitor_task.apply().get() == 1  # warned: 60 s >= 50 s; calm: 60 s < 250 s
    finally:
        get_settings.cache_clear()
    assert evaluations(factory, minute_ago + timedelta(seconds=1)) == {"warned-3pl": 1}


@pytest.mark.parametrize(
    ("raw", "message"),
    [("0", "must be [1.0, 60.0]"), ("three", "is not a number")],
)
def test_a_bad_divisor_is_one_clear_line(monkeypatch, raw, message):
    monkeypatch.setenv("ENRICHMENT_MONITOR_WARNING_DIVISOR", raw)
    with pytest.raises(ConfigurationError) as info:
        RoutingConfig.from_env()
    assert str(info.value) == f"ENRICHMENT_MONITOR_WARNING_DIVISOR={raw!r} {message}"
