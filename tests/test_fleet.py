"""Real chains through a real worker on real PostgreSQL, on both brokers: Redis (the session's
in-process worker, or subprocesses where a test kills a worker or needs beat) and RabbitMQ
(always subprocesses, the messages published from here by `tests.fleet.publisher`)."""

import signal
from datetime import timedelta

import pytest
from celery import signals
from sqlalchemy import func, select

from enrichment.core.models import EnrichmentAttempt, ExceptionRecord, ResolutionAction, utcnow
from enrichment.core.selection import claim_due
from tests.celery_fixtures import amqp_url, rabbitmq_broker  # noqa: F401 - fixtures
from tests.conftest import REDIS_URL
from tests.factories import make_record, make_tenant
from tests.fleet import Sender, fleet_env, publisher, start_beat, start_worker, stop_all, wait_for

pytestmark = pytest.mark.slow
BROKERS = ("redis", "rabbitmq")

DAMAGED = dict(
    reason_code="DAMAGE",
    notes="Customer says the box arrived crushed and the mug inside is broken.",
    events=[
        {"source": "wms", "type": "pick_completed", "at": "2026-11-20T08:00:00Z", "detail": ""},
        {"source": "carrier", "type": "delivered", "at": "2026-11-22T15:00:00Z", "detail": ""},
        {
            "source": "carrier",
            "type": "damage_reported",
            "at": "2026-11-22T15:05:00Z",
            "detail": "parcel crushed, contents broken",
        },
    ],
)


@pytest.fixture(params=BROKERS)
def broker_url(request, redis_client):
    """The test Redis db (flushed) or the test RabbitMQ vhost (its queues purged)."""
    return REDIS_URL if request.param == "redis" else request.getfixturevalue("rabbitmq_broker")


@pytest.fixture
def fleet(pg_url, factory, redis_client, tmp_path, request):
    """Start processes with `fleet.worker(**env)` / `fleet.beat(**env)` on the test's broker
    (`broker_url` when the test is parametrized by it, else Redis); all stop at the end."""
    url = request.getfixturevalue("broker_url") if "broker_url" in request.fixturenames else None

    class Fleet:
        procs = []
        broker = url or REDIS_URL

        def env(self, **overrides):
            return fleet_env(pg_url, self.broker, tmp_path, **overrides)

        def worker(self, name="w1", **overrides):
            proc = start_worker(self.env(**overrides), tmp_path / f"{name}.log", name=name)
            self.procs.append(proc)
            return proc

        def beat(self, **overrides):
            proc = start_beat(self.env(**overrides), tmp_path / "beat.log", tmp_path / "beat.db")
            self.procs.append(proc)
            return proc

    f = Fleet()
    yield f
    stop_all(f.procs)


@pytest.fixture
def sender(request, broker_url):
    """A worker for stage messages and what sends them: on Redis the session's in-process
    worker and the app itself; on RabbitMQ a worker subprocess and a publisher."""
    if broker_url == REDIS_URL:
        request.getfixturevalue("inproc_worker")
        from workers.app import app

        yield Sender(app)
        return
    request.getfixturevalue("fleet").worker()
    app = publisher(broker_url)
    yield Sender(app)
    app.close()


def records(factory, n, **kw):
    with factory.begin() as s:
        tenant = make_tenant(s)
        return [make_record(s, tenant, **kw).id for _ in range(n)]


def sweep_now(factory, settings, sender):
    """What beat's sweep task does: claim in one transaction, enqueue after commit."""
    with factory.begin() as s:
        claims = claim_due(s, settings)
    for c in claims:
        sender.chain(c.record_id, c.lease_token, c.countdown_s)
    return claims


def count(factory, stmt):
    with factory() as s:
        return s.scalar(stmt)


def all_enriched(factory, ids):
    R = ExceptionRecord
    return lambda: (
        count(factory, select(func.count()).where(R.id.in_(ids), R.enriched_at.is_not(None)))
        == len(ids)
    )


def test_a_chain_runs_all_three_stages_in_a_real_worker(sender, factory, settings):
    # Given three records due now and one due in 2 s (its chain goes with a countdown).
    due_at = utcnow() + timedelta(seconds=2)
    with factory.begin() as s:
        tenant = make_tenant(s)
        ids = [make_record(s, tenant, **DAMAGED).id for _ in range(3)]
        later = make_record(s, tenant, next_attempt_at=due_at, **DAMAGED).id
    claims = sweep_now(factory, settings, sender)
    in_order = sorted(claims, key=lambda c: c.record_id)
    assert [c.countdown_s > 1 for c in in_order] == [False, False, False, True]
    ids.append(later)
    wait_for(all_enriched(factory, ids), timeout_s=60, what="4 records enriched")
    with factory() as s:
        for rec in s.scalars(select(ExceptionRecord).where(ExceptionRecord.id.in_(ids))):
            assert rec.ai_label == "DAMAGED_PACKAGE" and rec.ai_confidence >= 0.7
            assert {
                rec.enrichment_state[k]["status"]
                for k in ("order_analysis", "classification", "automation")
            } == {"COMPLETED"}
        stages = s.execute(
            select(EnrichmentAttempt.stage, func.count()).group_by(EnrichmentAttempt.stage)
        ).all()
        first_try = s.scalar(
            select(func.min(EnrichmentAttempt.created_at)).where(
                EnrichmentAttempt.record_id == later
            )
        )
    assert dict(stages) == {"order_analysis": 4, "classification": 4, "automation": 4}
    assert first_try >= due_at  # the broker held the countdown: no stage ran early


def test_beat_sweeps_and_failures_retry_until_escalation(fleet, broker_url, factory):
    ids = records(factory, 2, **DAMAGED)
    # Every AI call fails; the schedule is scaled to milliseconds.
    env = dict(ENRICHMENT_LOCAL_FAULT_RATE="1.0", ENRICHMENT_BACKOFF_SCALE="0.0002")
    fleet.worker(**env)
    fleet.beat(**env)
    R = ExceptionRecord
    wait_for(
        lambda: count(factory, select(func.count()).where(R.escalated_at.is_not(None))) == 2,
        timeout_s=90,
        what="both records escalated",
    )
    with factory() as s:
        recs = s.scalars(select(R).where(R.id.in_(ids))).all()
        calls = s.scalar(select(func.count()).select_from(EnrichmentAttempt))
    assert all(r.ai_label is None and r.ai_confidence is None for r in recs)
    assert all(r.enrichment_retry_count == 5 and "injected" in r.escalation_reason for r in recs)
    assert calls == 2 * 6  # the first try and five retries, each failing at analyze


def test_a_duplicated_stage_message_changes_nothing(sender, factory, settings):
    first, sentinel = records(factory, 2, **DAMAGED)
    [claim, _] = sorted(sweep_now(factory, settings, sender), key=lambda c: c.record_id != first)
    wait_for(all_enriched(factory, [first, sentinel]), timeout_s=60, what="enriched")
    before = count(factory, select(func.count()).select_from(EnrichmentAttempt))
    actions_q = select(func.count()).where(ResolutionAction.record_id == first)
    actions_before = count(factory, actions_q)
    # Redeliver the first record's messages with its old token, then a fresh sentinel run.
    sender.stage("enrichment.analyze", first, claim.lease_token)
    sender.stage("enrichment.resolve", first, claim.lease_token)
    with factory.begin() as s:
        s.get(ExceptionRecord, sentinel).enriched_at = None
        s.get(ExceptionRecord, sentinel).enrichment_state = {}
    sweep_now(factory, settings, sender)
    wait_for(all_enriched(factory, [sentinel]), timeout_s=60, what="sentinel enriched")
    after = count(factory, select(func.count()).select_from(EnrichmentAttempt))
    assert after - before == 3  # only the sentinel's three stages ran
    assert count(factory, actions_q) == actions_before > 0


def test_sigkill_mid_chain_loses_nothing(fleet, broker_url, factory, tmp_path):
    from enrichment.tooling.fake_anthropic import FakeAnthropic

    ids = records(factory, 6, **DAMAGED)
    with FakeAnthropic(latency_s=1.5, seed=1) as fake:
        env = dict(
            ENRICHMENT_AI_PROVIDER="anthropic",
            ANTHROPIC_API_KEY="sk-test-not-a-real-key",
            ANTHROPIC_BASE_URL=fake.base_url,
            ENRICHMENT_LEASE_TTL_S="3",
            ENRICHMENT_SWEEP_HORIZON_S="2",
            ENRICHMENT_AI_RPM="0",
        )
        victim = fleet.worker("victim", **env)
        fleet.beat(**env)
        R = ExceptionRecord
        analysis_status = R.enrichment_state["order_analysis"]["status"].as_string()
        in_flight = select(func.count()).where(R.id.in_(ids), analysis_status == "IN_PROGRESS")
        wait_for(lambda: count(factory, in_flight) >= 1, timeout_s=60, what="a stage in flight")
        victim.kill(signal.SIGKILL)
        fleet.worker("rescuer", **env)
        wait_for(all_enriched(factory, ids), timeout_s=120, what="all records enriched after kill")
    with factory() as s:
        recs = s.scalars(select(R).where(R.id.in_(ids))).all()
    assert all(r.ai_label is not None and r.escalated_at is None for r in recs)


def test_the_monitor_runs_from_its_own_queue(inproc_worker, factory):
    from enrichment.core.monitor_models import MetricSnapshot
    from workers.tasks import monitor_task

    routed = []

    def on_prerun(task, **_kwargs):
        if task.name == "enrichment.monitor":
            routed.append(task.request.delivery_info["routing_key"])

    records(factory, 2, **DAMAGED)
    signals.task_prerun.connect(on_prerun, weak=False)
    try:
        monitor_task.apply_async()
        wait_for(
            lambda: count(factory, select(func.count()).select_from(MetricSnapshot)) == 1,
            timeout_s=60,
            what="a snapshot written by the worker",
        )
    finally:
        signals.task_prerun.disconnect(on_prerun)
    assert routed == ["control"]
