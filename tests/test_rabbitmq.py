"""RabbitMQ as the broker: the settings it refuses, the queues the fleet declares there, and the
autoscaling signals read from it (the chains themselves run on it in tests/test_fleet.py).

Runs against the local RabbitMQ (TEST_AMQP_URL, a vhost of the tests' own); a missing server
fails the run, it never skips.
"""

from dataclasses import replace

import pytest
from amqp.exceptions import PreconditionFailed
from kombu import Connection, Queue
from prometheus_client.parser import text_string_to_metric_families

from enrichment.api import app as api_app
from enrichment.api import deps
from enrichment.core.models import EnrichmentAttempt
from enrichment.core.settings import ConfigurationError, Settings
from enrichment.tooling.drill import parse_args
from tests.celery_fixtures import amqp_url, rabbitmq_broker  # noqa: F401 - fixtures
from tests.factories import make_record, make_tenant
from tests.fleet import fleet_env, publisher, start_worker, stop_all
from workers import queues

AMQP = "amqp://guest:guest@127.0.0.1:5672/x"


@pytest.fixture
def vhost(request) -> str:
    """The test vhost's URL, its queues purged before and after (tests/celery_fixtures.py)."""
    return request.getfixturevalue("rabbitmq_broker")


def test_a_horizon_that_could_reach_consumer_timeout_is_refused_on_rabbitmq():
    # 30 min consumer_timeout - 300 s margin - 180 s run (6 x the 30 s AI timeout) = 1320 s.
    assert Settings(broker_url=AMQP, sweep_horizon_s=1319).sweep_horizon_s == 1319
    with pytest.raises(ConfigurationError, match=r"ENRICHMENT_SWEEP_HORIZON_S=1320 .* below 1320"):
        Settings(broker_url=AMQP, sweep_horizon_s=1320)
    with pytest.raises(ConfigurationError, match="lower ENRICHMENT_AI_TIMEOUT_S"):
        Settings(broker_url=AMQP, sweep_horizon_s=60, ai_timeout_s=300)
    # Redis has no consumer_timeout: its bound is the 1 h visibility timeout (1800 s at most).
    assert Settings(broker_url="redis://h:6379/0", sweep_horizon_s=1800).sweep_horizon_s == 1800


def test_the_refusal_is_a_start_up_error_naming_the_variable(monkeypatch):
    monkeypatch.setenv("CELERY_BROKER_URL", AMQP)
    monkeypatch.setenv("ENRICHMENT_SWEEP_HORIZON_S", "1800")
    with pytest.raises(ConfigurationError, match="^ENRICHMENT_SWEEP_HORIZON_S=1800 is too long"):
        Settings.from_env()


def test_queue_depths_are_read_from_rabbitmq_without_taking_a_message(vhost):
    app = publisher(vhost)
    try:
        for _ in range(3):
            app.send_task("enrichment.analyze", (0, "no-such-token"))
        app.send_task("enrichment.monitor", queue="control")
    finally:
        app.close()
    settings = Settings(broker_url=vhost)

    first, again = queues.read_broker(settings), queues.read_broker(settings)

    assert first == again == queues.BrokerReading(depths={"celery": 3, "control": 1}, workers=0)


def test_the_fleet_declares_classic_durable_queues(vhost):
    app = publisher(vhost)
    with app.connection_for_write() as conn:
        for queue in app.amqp.queues.values():
            queue(conn.default_channel).declare()
    app.close()
    # RabbitMQ refuses a declaration that differs from the queue it has: so each queue is
    # neither quorum nor transient.
    quorum, transient = dict(queue_arguments={"x-queue-type": "quorum"}), dict(durable=False)
    with Connection(vhost) as conn:
        for name in queues.QUEUE_NAMES:
            Queue(name)(conn.channel()).declare()  # classic and durable: accepted
            for other in (quorum, transient):
                with pytest.raises(PreconditionFailed):
                    Queue(name, **other)(conn.channel()).declare()


def test_a_worker_on_rabbitmq_is_counted_and_the_recommendation_follows_it(
    client, factory, settings, vhost, tmp_path, pg_url
):
    # Given 10 records due, 30 stages completed in the last minute and one live worker.
    with factory.begin() as s:
        tenant = make_tenant(s)
        ids = [make_record(s, tenant).id for _ in range(10)]
        for record_id in ids * 3:
            s.add(_completed(tenant.id, record_id))
    worker = start_worker(fleet_env(pg_url, vhost, tmp_path), tmp_path / "w.log", name="counted")
    scraped = replace(settings, broker_url=vhost, target_drain_s=12.0, metrics_open=True)
    api_app.dependency_overrides[deps.app_settings] = lambda: scraped
    try:
        # When /metrics is scraped.
        text = client.get("/metrics").text
    finally:
        stop_all([worker])
    values = {
        s.name: s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if not s.labels
    }
    # Then r = 30 / 3 / 60 s / 1 worker = 1/6 record/s, and ceil(10 / (1/6 x 12 s)) = 5.
    assert values["enrichment_workers_online"] == 1
    assert values["enrichment_worker_throughput_records_per_second"] == pytest.approx(1 / 6)
    assert values["enrichment_fleet_backlog_records"] == 10
    assert values["enrichment_desired_workers"] == 5


def test_the_drill_runs_on_rabbitmq_in_a_vhost_named_like_its_database():
    cfg = parse_args(["--broker", "rabbitmq", "--db-name", "drill_x"])
    assert cfg.broker_url == "amqp://guest:guest@127.0.0.1:5672/drill_x"
    assert parse_args([]).broker_url.startswith("redis://")
    with pytest.raises(SystemExit):
        parse_args(["--broker", "kafka"])


def _completed(tenant_id: int, record_id: int) -> EnrichmentAttempt:
    return EnrichmentAttempt(
        tenant_id=tenant_id,
        record_id=record_id,
        stage="classification",
        outcome="completed",
        latency_s=1.0,
        provider="local",
    )
