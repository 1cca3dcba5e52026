"""Fair shares, order within a tenant, in-flight caps, budgets and sweep sizing: the pure
rules without services, then the claim that applies them on PostgreSQL (and SQLite)."""

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from enrichment.core import scheduling
from enrichment.core.due import fleet_load
from enrichment.core.models import EnrichmentAttempt, ExceptionRecord, Tenant, utcnow
from enrichment.core.monitor_models import SweepStat
from enrichment.core.scheduling import fair_shares, sched_at, sweep_size
from enrichment.core.selection import claim, claim_due, sweep_for_fleet
from enrichment.core.tenant_settings import TenantSettings
from enrichment.metrics import prom
from tests.conftest import with_settings
from tests.factories import make_record, make_tenant

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


# -- pure rules ---------------------------------------------------------------------------


def test_one_tenant_alone_gets_the_whole_batch():
    assert fair_shares(60, {1: 500}, {1: 1.0}) == {1: 60}


def test_a_tenant_with_little_demand_gives_the_rest_away():
    assert fair_shares(60, {1: 500, 2: 5, 3: 5}, {}) == {1: 50, 2: 5, 3: 5}


def test_weights_two_to_one():
    assert fair_shares(30, {1: 100, 2: 100}, {1: 2.0, 2: 1.0}) == {1: 20, 2: 10}


def test_spare_share_is_refilled_by_weight():
    # 3 is capped at 2 of its 10; 1 and 2 split the other 28 by 3:1.
    assert fair_shares(30, {1: 100, 2: 100, 3: 2}, {1: 3.0, 2: 1.0}) == {1: 21, 2: 7, 3: 2}


@pytest.mark.parametrize("batch", [0, 1, 7, 10, 11, 99, 1000])
def test_shares_sum_to_the_batch_or_the_demand_and_never_exceed_demand(batch):
    demand = {1: 3, 2: 50, 3: 1, 4: 0, 5: 17}
    weights = {1: 1.0, 2: 2.5, 3: 1.0, 5: 0.3}
    shares = fair_shares(batch, demand, weights)
    assert sum(shares.values()) == min(batch, sum(demand.values()))
    assert all(0 <= shares[t] <= demand[t] for t in demand)


def test_rounding_is_deterministic_and_leftover_seats_follow_precedence():
    demand = {1: 10, 2: 10, 3: 10}
    assert fair_shares(2, demand, {}) == {1: 1, 2: 1, 3: 0}
    assert fair_shares(2, demand, {}, precedence=[3, 2, 1]) == {1: 0, 2: 1, 3: 1}


@pytest.mark.parametrize("raw", [None, "x", -1, 0, float("nan"), True, [2], {"a": 1}])
def test_a_bad_weight_counts_as_one(raw):
    assert TenantSettings.parse({"weight": raw}).weight == 1.0


def test_weight_cap_and_budget_are_read_from_tenant_settings():
    own = TenantSettings.parse({"weight": "2.5", "max_in_flight": 4, "daily_budget_usd": 1.5})
    assert (own.weight, own.max_in_flight, own.daily_budget_usd) == (2.5, 4, 1.5)
    assert TenantSettings.parse({"max_in_flight": "lots"}).max_in_flight is None
    assert TenantSettings.parse(None).daily_budget_usd is None


def test_claimable_demand_respects_cap_and_budget():
    kw = dict(leased=3, max_in_flight=5, spent_usd=0.0, budget_usd=None)
    assert scheduling.claimable_demand(10, **kw) == 2
    assert scheduling.claimable_demand(10, **{**kw, "leased": 9}) == 0
    assert scheduling.claimable_demand(10, **{**kw, "spent_usd": 2.0, "budget_usd": 2.0}) == 0
    assert scheduling.claimable_demand(10, **{**kw, "spent_usd": 1.9, "budget_usd": 2.0}) == 2


def test_aging_a_low_record_due_3h_ago_precedes_a_critical_due_now():
    assert sched_at(NOW - timedelta(hours=3), "low", None) < sched_at(NOW, "critical", None)


def test_a_critical_due_now_precedes_a_low_due_30_min_ago():
    assert sched_at(NOW, "critical", None) < sched_at(NOW - timedelta(minutes=30), "low", None)


def test_priority_orders_within_a_severity():
    assert sched_at(NOW, "high", 90) < sched_at(NOW, "high", 10) < sched_at(NOW, "high", None)


def test_the_migration_trigger_repeats_the_boosts():
    from importlib import import_module

    boost = import_module("migrations.versions.0005_fair_scheduling").BOOST
    for severity, seconds in scheduling.SEVERITY_BOOST_S.items():
        assert f"'{severity}' THEN {int(seconds)}" in boost or seconds == 0
    assert f"{int(scheduling.PRIORITY_STEP_S)} * LEAST(" in boost
    assert f"{scheduling.MAX_PRIORITY})" in boost


SIZE = dict(interval_s=60.0, headroom=1.5, floor=20, ceiling=500)


def test_sweep_size_is_throughput_times_interval_less_in_flight():
    # 180 completed attempts in 60 s = 1 record/s -> 60 s x 1.5 = 90, less 30 in flight.
    assert sweep_size(180, 30, **SIZE) == 60


def test_sweep_size_has_a_floor_and_a_ceiling():
    assert sweep_size(0, 0, **SIZE) == 20  # a cold fleet still moves
    assert sweep_size(180, 500, **SIZE) == 20  # queue already full: only the floor
    assert sweep_size(100_000, 0, **SIZE) == 500
    assert sweep_size(0, 0, **{**SIZE, "floor": 900}) == 500  # the ceiling wins


# -- the claim on a database --------------------------------------------------------------


def _tenant(s, name, n, **kw):
    settings = kw.pop("settings", {})
    tenant = make_tenant(s, name, settings=settings)
    due = kw.pop("next_attempt_at", utcnow() - timedelta(minutes=1))
    ids = [make_record(s, tenant, next_attempt_at=due, **kw).id for _ in range(n)]
    return tenant.id, ids


def _by_tenant(factory, claims):
    with factory() as s:
        ids = [c.record_id for c in claims]
        rows = s.execute(
            select(ExceptionRecord.tenant_id, ExceptionRecord.id).where(ExceptionRecord.id.in_(ids))
        )
        out = {}
        for tid, rid in rows:
            out.setdefault(tid, set()).add(rid)
        return out


def test_small_tenants_are_not_starved_by_a_big_one(any_factory, settings):
    with any_factory.begin() as s:
        big, _ = _tenant(s, "big", 500)
        small = dict(_tenant(s, f"small-{i}", 5) for i in range(5))
    with any_factory.begin() as s:
        claims = claim(s, settings, 60).claims
    got = _by_tenant(any_factory, claims)
    assert len(claims) == 60
    assert all(got[t] == set(ids) for t, ids in small.items())
    assert len(got[big]) == 35
    with any_factory() as s:
        stats = {r.tenant_id: (r.due, r.claimed) for r in s.scalars(select(SweepStat))}
    assert stats[big] == (60, 35)
    assert all(stats[t] == (5, 5) for t in small)


def test_fifo_claims_in_due_order_blind_to_tenants(any_factory, settings):
    """ENRICHMENT_CLAIM_ORDER=fifo, the order before fair scheduling (and P6's baseline): the
    big tenant's earlier records fill the batch; the sweep stats still show who waited."""
    hour_ago = utcnow() - timedelta(hours=1)
    with any_factory.begin() as s:
        big, big_ids = _tenant(s, "big", 30, next_attempt_at=hour_ago)
        small, _ = _tenant(s, "small", 5)
    fifo = with_settings(settings, claim_order="fifo")
    with any_factory.begin() as s:
        report = claim(s, fifo, 20)
    assert {c.record_id for c in report.claims} < set(big_ids)
    assert len(report.claims) == 20 and report.claimed == {big: 20, small: 0}
    assert report.due == {big: 20, small: 5}


def test_severity_orders_the_claim_within_a_tenant(any_factory, settings):
    due = utcnow() - timedelta(minutes=1)
    with any_factory.begin() as s:
        tenant = make_tenant(s, "t")
        low = [make_record(s, tenant, severity="low", next_attempt_at=due).id for _ in range(3)]
        crit = make_record(s, tenant, severity="critical", next_attempt_at=due).id
        high = make_record(s, tenant, severity="high", next_attempt_at=due).id
    with any_factory.begin() as s:
        first = [c.record_id for c in claim(s, settings, 2).claims]
    assert set(first) == {crit, high}
    with any_factory.begin() as s:
        assert {c.record_id for c in claim(s, settings, 5).claims} == set(low)


def test_max_in_flight_caps_a_tenant_and_its_spare_goes_to_others(any_factory, settings):
    lease = dict(lease_token="x", lease_expires_at=utcnow() + timedelta(minutes=5))
    with any_factory.begin() as s:
        capped, _ = _tenant(s, "capped", 20, settings={"max_in_flight": 5})
        make_record(s, s.get(Tenant, capped), **lease)
        make_record(s, s.get(Tenant, capped), **lease)
        other, _ = _tenant(s, "other", 20)
    with any_factory.begin() as s:
        got = _by_tenant(any_factory, claim(s, settings, 20).claims)
    assert len(got[capped]) == 3  # 5 allowed, 2 already in flight
    assert len(got[other]) == 17
    with any_factory.begin() as s:
        assert _by_tenant(any_factory, claim(s, settings, 20).claims).get(capped) is None


def _spend(factory, tenant_id, record_id, usd, at, *, times=1, batch_id=None):
    with factory.begin() as s:
        for _ in range(times):
            s.add(
                EnrichmentAttempt(
                    tenant_id=tenant_id,
                    record_id=record_id,
                    stage="classification",
                    outcome="completed",
                    latency_s=1.0,
                    provider="local",
                    cost_usd=usd,
                    created_at=at,
                    batch_id=batch_id,
                )
            )


def test_a_tenant_at_its_budget_waits_until_the_next_utc_day(any_factory, settings):
    with any_factory.begin() as s:
        thrifty, ids = _tenant(s, "thrifty", 4, settings={"daily_budget_usd": 1.0})
        other, _ = _tenant(s, "other", 4)
    now = utcnow()
    _spend(any_factory, thrifty, ids[0], 1.0, now - timedelta(seconds=5))
    with any_factory.begin() as s:
        report = claim(s, settings, 10, now=now)
    assert report.claimed == {thrifty: 0, other: 4} and report.due[thrifty] == 4
    tomorrow = scheduling.utc_day(now)[1] + timedelta(minutes=1)
    with any_factory.begin() as s:
        assert claim(s, settings, 10, now=tomorrow).claimed[thrifty] == 4


def test_raising_the_budget_resumes_the_tenant(any_factory, settings):
    with any_factory.begin() as s:
        thrifty, ids = _tenant(s, "thrifty", 3, settings={"daily_budget_usd": 0.5})
    now = utcnow()
    _spend(any_factory, thrifty, ids[0], 0.6, now - timedelta(seconds=5))
    with any_factory.begin() as s:
        assert claim_due(s, settings, tenant_id=thrifty, now=now) == []
    with any_factory.begin() as s:
        s.get(Tenant, thrifty).settings = {"daily_budget_usd": 5.0}
    with any_factory.begin() as s:
        assert len(claim_due(s, settings, tenant_id=thrifty, now=now)) == 3


def test_the_sweep_claims_what_the_fleet_starts_in_one_interval(factory, settings):
    with factory.begin() as s:
        tenant_id, ids = _tenant(s, "busy", 300)
    now = utcnow()
    for i in range(90):  # 90 completed attempts in the last minute: 0.5 records/s
        _spend(factory, tenant_id, ids[i % 3], 0.0, now - timedelta(seconds=30))
    sized = with_settings(settings, sweep_interval_s=60.0, sweep_headroom=2.0, sweep_min_batch=5)
    with factory.begin() as s:
        first = sweep_for_fleet(s, sized, now=now)
    assert (first.size, len(first.claims)) == (60, 60)
    with factory.begin() as s:
        second = sweep_for_fleet(s, sized, now=now)
    assert second.size == 5  # 60 already in flight: only the floor


def test_the_sweep_and_prometheus_read_one_throughput_without_message_batches(factory, settings):
    # Given 90 stages completed by chains in the last minute (0.5 records/s), and a Message
    # Batch's 3,000 results applied at the same moment
    with factory.begin() as s:
        tenant_id, ids = _tenant(s, "busy", 300)
    now = utcnow()
    half_a_minute_ago = now - timedelta(seconds=30)
    _spend(factory, tenant_id, ids[0], 0.0, half_a_minute_ago, times=90)
    _spend(factory, tenant_id, ids[1], 0.0, half_a_minute_ago, times=3000, batch_id=7)
    sized = with_settings(settings, sweep_interval_s=60.0, sweep_headroom=2.0, sweep_min_batch=5)

    # When the sweep sizes its claim, then the fleet's load is read as Prometheus reads it
    with factory.begin() as s:
        claimed = sweep_for_fleet(s, sized, now=now)
    with factory() as s:
        load = fleet_load(s, sized, now, count_due=True)

    # Then both see the chains' rate only: the batch would have sized the claim at its ceiling
    assert claimed.size == 60  # 0.5 records/s x 60 s x 2
    assert (load.completed_stages, load.window_s, load.in_chains, load.due) == (90, 60.0, 60, 240)
    assert prom.per_worker_records_per_s(load, 1) == 0.5
    # And a faster sweep reads a shorter window, for both: the attempts 30 s ago fall out
    with factory() as s:
        quick = fleet_load(s, with_settings(sized, sweep_interval_s=5.0), now)
    assert (quick.window_s, quick.completed_stages) == (15.0, 0)


def _claim_many(factory, settings):
    got = []
    for _ in range(30):
        with factory.begin() as s:
            got += [c.record_id for c in claim(s, settings, 9).claims]
    return got


def test_two_concurrent_fair_claims_never_overlap(factory, settings):
    with factory.begin() as s:
        for i in range(4):
            _tenant(s, f"t{i}", 50 + 10 * i)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: _claim_many(factory, settings), range(2)))
    everything = results[0] + results[1]
    assert len(everything) == len(set(everything)) == 260
    assert results[0] and results[1]
