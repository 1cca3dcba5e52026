"""The Celery app. Every setting that makes the fleet safe says why, in one line."""

from __future__ import annotations

import sys

from celery import Celery, signals

import beat_schedule
from enrichment import providers
from enrichment.core import db
from enrichment.core.logs import configure_logging
from enrichment.core.settings import (
    ConfigurationError,
    Settings,
    get_settings,
    task_time_limit_s,
)
from enrichment.history import partitions
from enrichment.providers import ratelimit
from workers import readiness
from workers.queues import broker_options, broker_transport, task_queues


def make_app(settings: Settings) -> Celery:
    app = Celery("workers", broker=settings.broker_url, include=["workers.tasks"])
    app.conf.update(
        # Ack after the task ran, so a crash mid-stage redelivers the message...
        task_acks_late=True,
        # ...including when the pool child is SIGKILLed or OOM-killed (lease tokens make
        # the redelivery harmless).
        task_reject_on_worker_lost=True,
        # One reserved message per process: long AI calls don't hoard work from idle workers.
        worker_prefetch_multiplier=1,
        # Countdown messages sit in worker memory and bypass prefetch; cap them.
        worker_eta_task_limit=1000,
        # Flower builds its view from events: both kinds must be on.
        worker_send_task_events=True,
        task_send_sent_event=True,
        # A stuck AI call gets SoftTimeLimitExceeded first, then the child is killed.
        task_soft_time_limit=max(60, int(settings.ai_timeout_s * 4)),
        # On RabbitMQ, Settings keeps horizon + this under consumer_timeout (queues.py).
        task_time_limit=task_time_limit_s(settings.ai_timeout_s),
        # After a broker reconnect, cancel acks_late tasks rather than run them twice.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        # Chains need no result backend; the database row is the result.
        task_ignore_result=True,
        # A broker down at start-up is refused by refuse_unless_ready (one line, exit 1); one
        # that drops between that check and the first connection is waited for, not fatal.
        broker_connection_retry_on_startup=True,
        broker_transport_options=broker_options(settings),
        # The embedded broker's writes must be atomic (see workers/broker.py).
        broker_transport=broker_transport(settings),
        # structlog writes to stderr itself; keep Celery from re-wrapping it.
        worker_redirect_stdouts=False,
        worker_hijack_root_logger=False,
        # The monitor, delivery, batches and calibration get their own queue: behind a deep
        # backlog of stage messages they would otherwise expire before a worker reached them
        # (and decisions would wait for the backlog to reach their receivers). Workers
        # consume both in turn.
        # The sweep stays behind the backlog on purpose: while the queue is deep it does not
        # claim more (and so does not let leases run out on records nobody has reached).
        # On RabbitMQ: classic durable queues (why not quorum: workers/queues.py).
        task_queues=task_queues(settings),
        task_routes={
            t: {"queue": "control"}
            for t in (
                "enrichment.monitor",
                "enrichment.deliver",
                "enrichment.batches",
                "enrichment.calibrate",
            )
        },
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        beat_schedule=beat_schedule.schedule(settings),
    )
    return app


def _settings_or_exit() -> Settings:
    """The settings; a wrong one is one line and exit 78 (EX_CONFIG), not an import traceback."""
    try:
        return get_settings()
    except ConfigurationError as exc:
        print(f"refusing to start: configuration error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(78) from None


app = make_app(_settings_or_exit())


@signals.worker_init.connect
def _before_fork(**_kwargs) -> None:
    refuse_unless_ready()
    providers.preload(get_settings())
    # The history's time partitions ahead (PostgreSQL), before any record is taken.
    partitions.ensure(db.get_engine(get_settings().database_url))


@signals.beat_init.connect
def _before_beat(**_kwargs) -> None:
    refuse_unless_ready()


def refuse_unless_ready() -> None:
    """Before a worker consumes or beat schedules: the database reachable and at head, the
    broker reachable; else one line and exit 1. A worker that started anyway would take
    records and fail them, and their leases would hold them for the lease TTL; on a broker
    down at start-up Celery would retry (broker_connection_retry_on_startup) for minutes."""
    found = readiness.problem(get_settings())
    if found is not None:
        print(f"refusing to start: {found}", file=sys.stderr, flush=True)
        raise SystemExit(1)


@signals.celeryd_after_setup.connect
def _announce(**_kwargs) -> None:
    # After logging is set up (worker_init comes before it): one line per worker.
    ratelimit.log_startup(get_settings())


@signals.worker_process_init.connect
def _after_fork(**_kwargs) -> None:
    # Pooled connections inherited from the parent must not be shared across processes.
    db.dispose_engines(close=False)


@signals.worker_process_shutdown.connect
@signals.worker_shutdown.connect
def _shutdown(**_kwargs) -> None:
    db.dispose_engines()


@signals.setup_logging.connect
def _logging(**_kwargs) -> None:
    configure_logging(get_settings().log_format)
