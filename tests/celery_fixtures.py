"""An in-process Celery worker on the project's real app, through pytest-celery's classic
fixtures (`celery.contrib.pytest`; its Docker fixtures are never requested).

Chains that need no process to kill run here, without starting a worker subprocess per test.
The app's keys on the test Redis carry a prefix from the first use of these fixtures to the
end of the session, so this worker never takes the messages of a subprocess fleet (beat, a
worker to SIGKILL) that shares the Redis database, nor they its. So nothing in this process
may publish for a subprocess worker; tests that enqueue from here use `inproc_worker`.

RabbitMQ: TEST_AMQP_URL (default: vhost `test` on 127.0.0.1:5672 as guest) chooses where; the
vhost is made if missing (rabbitmqctl). Tests there run a worker subprocess and publish from
this process through `tests.fleet.publisher`. A missing RabbitMQ fails the run; it never skips.
"""

from __future__ import annotations

import os

import pytest

from enrichment.core.settings import get_settings

KEY_PREFIX = "inproc:"
AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/test")


@pytest.fixture(scope="session")
def celery_session_app(pg_url):
    """`workers.app` itself (its task names, queues and safety settings) with the local provider."""
    from workers.app import app

    options = app.conf.broker_transport_options
    # Before this process first publishes: the connection pool keeps the options it was made with.
    app.conf.broker_transport_options = {**options, "global_keyprefix": KEY_PREFIX}
    with pytest.MonkeyPatch.context() as patch:
        # The worker's tasks read get_settings(); a developer's ANTHROPIC_API_KEY must not switch
        # them to the real API. The subprocess fleets get the same from fleet_env.
        patch.setenv("ENRICHMENT_AI_PROVIDER", "local")
        get_settings.cache_clear()
        yield app
    get_settings.cache_clear()
    app.conf.broker_transport_options = options


@pytest.fixture(scope="session")
def celery_worker_pool() -> str:
    # Threads run countdown (ETA) messages from the worker's timer, as prefork does.
    return "threads"


@pytest.fixture(scope="session")
def celery_worker_parameters() -> dict:
    return {
        "queues": ("celery", "control"),
        "concurrency": 2,
        # The ping check reads a result, and chains run with no result backend.
        "perform_ping_check": False,
        "shutdown_timeout": 30.0,
    }


@pytest.fixture
def inproc_worker(celery_session_app, celery_session_worker, factory):
    """The session's worker, with the queue bindings a flushed Redis lost declared again."""
    # Without its binding, a message to the exchange goes to the dead-letter queue, unseen.
    with celery_session_app.connection_for_write() as conn:
        for queue in celery_session_app.amqp.queues.values():  # bound to the "celery" exchange
            queue(conn.default_channel).declare()
    return celery_session_worker


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """The test vhost on the local RabbitMQ, made on first use."""
    from enrichment.tooling.drill import rabbitmq

    rabbitmq.ensure_vhost(AMQP_URL)
    return AMQP_URL


@pytest.fixture
def rabbitmq_broker(amqp_url):
    """The test vhost with the fleet's queues emptied before and after the test."""
    from workers import queues

    queues.purge(amqp_url)
    yield amqp_url
    queues.purge(amqp_url)
