"""Which records a sweep claims, on PostgreSQL and SQLite, and that claims never overlap."""

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import select

from enrichment.core import breaker_store, db
from enrichment.core.due import fleet_load
from enrichment.core.models import ExceptionRecord, Tenant, utcnow
from enrichment.core.selection import claim_due, requeue
from enrichment.metrics import passes
from enrichment.reporting import backlog
from enrichment.tooling.progress import read_progress
from tests.conftest import migrate, with_settings
from tests.factories import make_record, make_tenant


def seed(factory, **overrides_per_name):
    """One record per keyword: name -> column overrides. Returns name -> record id."""
    now = utcnow()
    with factory.begin() as s:
        tenant = make_tenant(s)
        ids = {}
        for name, cols in overrides_per_name.items():
            cols = {k: (now + v if isinstance(v, timedelta) else v) for k, v in cols.items()}
            ids[name] = make_record(s, tenant, **cols).id
    return ids


def claimed_ids(factory, settings, **kw):
    with factory.begin() as s:
        return {c.record_id for c in claim_due(s, settings, **kw)}


def test_claims_exactly_the_records_that_need_enrichment_and_are_due(any_factory, settings):
    day, hour = timedelta(days=1), timedelta(hours=1)
    ids = seed(
        any_factory,
        fresh={},
        due_soon={"next_attempt_at": timedelta(minutes=2)},
        too_late={"next_attempt_at": timedelta(minutes=30)},
        leased={"lease_token": "x", "lease_expires_at": timedelta(minutes=5)},
        lease_expired={"lease_token": "x", "lease_expires_at": -timedelta(minutes=1)},
        escalated={"escalated_at": -day},
        enriched={"ai_label": "OTHER", "ai_confidence": 0.9, "enriched_at": -day},
        # A low-confidence answer sets next_attempt_at to the recheck time (24 h later).
        low_recent={"ai_label": "OTHER", "ai_confidence": 0.5, "next_attempt_at": 23 * hour},
        low_stale={"ai_label": "OTHER", "ai_confidence": 0.5, "next_attempt_at": -hour},
        confident_unresolved={"ai_label": "OTHER", "ai_confidence": 0.9},
        no_label={"ai_confidence": 0.9},
    )
    got = claimed_ids(any_factory, settings)
    expected = {
        "fresh",
        "due_soon",
        "lease_expired",
        "low_stale",
        "confident_unresolved",
        "no_label",
    }
    assert got == {ids[n] for n in expected}


def test_countdown_is_next_attempt_minus_now_and_never_past_the_horizon(any_factory, settings):
    ids = seed(any_factory, now={}, later={"next_attempt_at": timedelta(seconds=200)})
    with any_factory.begin() as s:
        claims = {c.record_id: c.countdown_s for c in claim_due(s, settings)}
    assert claims[ids["now"]] == 0
    assert 195 <= claims[ids["later"]] <= 200
    assert max(claims.values()) <= settings.sweep_horizon_s


def test_batches_are_bounded_and_a_claimed_record_is_not_claimed_again(any_factory, settings):
    seed(any_factory, **{f"r{i}": {} for i in range(7)})
    small = with_settings(settings, sweep_batch_size=3)
    first, second, third = (claimed_ids(any_factory, small) for _ in range(3))
    assert (len(first), len(second), len(third)) == (3, 3, 1)
    assert not (first & second) and not (second & third)
    assert claimed_ids(any_factory, small) == set()


def test_claim_for_one_tenant_leaves_other_tenants_alone(factory, settings):
    with factory.begin() as s:
        a, b = make_tenant(s, "tenant-a"), make_tenant(s, "tenant-b")
        a_ids = {make_record(s, a).id for _ in range(3)}
        make_record(s, b)
        a_id = a.id
    assert claimed_ids(factory, settings, tenant_id=a_id) == a_ids


def _sweep_many(factory, settings):
    got = []
    for _ in range(40):
        got += list(claimed_ids(factory, settings))
    return got


@pytest.mark.parametrize("db_kind", ["postgresql", "sqlite"])
def test_two_concurrent_sweeps_never_claim_the_same_record(db_kind, factory, settings, tmp_path):
    if db_kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'race.db'}"
        migrate(url)
        factory = db.session_factory(url)
    seed(factory, **{f"r{i}": {} for i in range(400)})
    small = with_settings(settings, sweep_batch_size=7)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: _sweep_many(factory, small), range(2)))
    everything = results[0] + results[1]
    assert len(everything) == 400
    assert len(set(everything)) == 400
    assert results[0] and results[1]


def test_requeue_resets_escalated_records_of_one_tenant(factory, settings):
    with factory.begin() as s:
        a, b = make_tenant(s, "tenant-a"), make_tenant(s, "tenant-b")
        esc = dict(escalated_at=utcnow(), escalation_reason="boom", enrichment_retry_count=5)
        a1, a2 = make_record(s, a, **esc).id, make_record(s, a, **esc).id
        b1 = make_record(s, b, **esc).id
        busy = make_record(s, a, lease_token="t", lease_expires_at=utcnow() + timedelta(minutes=5))
        a_id = a.id
    with factory.begin() as s:
        assert requeue(s, a_id, record_id=a1) == 1
    assert claimed_ids(factory, settings) == {a1}
    with factory.begin() as s:
        # a1 was just claimed and `busy` is leased too: only a2 is reset.
        assert requeue(s, a_id) == 1
    with factory() as s:
        rows = {r.id: r for r in s.scalars(select(ExceptionRecord))}
    assert rows[a2].escalated_at is None and rows[a2].enrichment_retry_count == 0
    assert rows[b1].escalated_at is not None
    assert rows[busy.id].lease_token == "t"


def test_a_requeued_low_confidence_record_is_claimable_at_once(factory, settings):
    # Given two escalated records whose last answer was a low-confidence label, written just
    # now (updated_at fresh: the 24 h recheck has not passed by the clock),
    low = dict(ai_label="OTHER", ai_confidence=0.4, escalated_at=utcnow(), escalation_reason="x")
    ids = seed(factory, one={**low, "enrichment_retry_count": 5}, two=dict(low))
    tenant_id = _tenant_of(factory, ids["one"])
    # when a person requeues the tenant,
    with factory.begin() as s:
        assert requeue(s, tenant_id) == 2
    # then the next sweep claims both now, whatever their label.
    assert claimed_ids(factory, settings) == {ids["one"], ids["two"]}


def _tenant_of(factory, record_id):
    with factory() as s:
        return s.get(ExceptionRecord, record_id).tenant_id


def test_the_monitor_prometheus_the_breaker_and_the_progress_line_count_the_same_due(
    factory, settings
):
    # Given one record of each kind
    spent = settings.max_retries + 1
    ids = seed(
        factory,
        due=dict(next_attempt_at=-timedelta(minutes=1)),
        expired=dict(next_attempt_at=-timedelta(minutes=1), lease_token="old",
                     lease_expires_at=-timedelta(seconds=1)),
        expired_too=dict(next_attempt_at=-timedelta(minutes=2), lease_token="old",
                         lease_expires_at=-timedelta(minutes=1)),
        leased=dict(next_attempt_at=-timedelta(minutes=1), lease_token="live",
                    lease_expires_at=timedelta(minutes=5)),
        spent=dict(next_attempt_at=-timedelta(minutes=1), enrichment_retry_count=spent),
        soon=dict(next_attempt_at=timedelta(minutes=2)),  # within the sweep's horizon
        later=dict(next_attempt_at=timedelta(hours=1)),
        enriched=dict(next_attempt_at=-timedelta(minutes=1), enriched_at=timedelta(0)),
        escalated=dict(next_attempt_at=-timedelta(minutes=1), escalated_at=timedelta(0)),
    )  # fmt: skip
    now = utcnow()

    # When each reader counts what is due now and unclaimed
    with factory() as s:
        tenant = s.scalars(select(Tenant)).one()
        monitor = passes.due_counts(s, tenant.id, now=now, max_retries=settings.max_retries)
        fleet = fleet_load(s, settings, now, count_due=True)
        waiting = breaker_store.waiting_records(s.connection(), settings)
        report = backlog.backlog(s, tenant, now=now)
    progress = read_progress(factory, max_retries=settings.max_retries)

    # Then they agree: a due record, and two whose leases expired
    assert monitor["due"] == fleet.due == waiting == progress.unclaimed == 3
    assert progress.backoff == 2 and fleet.in_chains == 1
    # And the report's wider "due now" is the backlog past its time, leased or not
    assert (report.due_now, report.leased, report.backlog_records) == (5, 1, 7)
    # And the claim takes those three and what is due within its horizon
    due = {ids[name] for name in ("due", "expired", "expired_too", "soon")}
    assert claimed_ids(factory, settings) == due
