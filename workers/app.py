"""The Celery app. Every setting that makes the fleet safe says why, in one line."""

from __future__ import annotations

from celery import Celery, signals
from kombu import Queue

import beat_schedule
from enrichment import providers
from enrichment.core import db
from enrichment.core.logs import configure_logging
from enrichment.core.settings import VAR_DIR, Settings, get_settings


def broker_options(settings: Settings) -> dict:
    if settings.broker_url.startswith("filesystem"):
        # The embedded broker: one folder on disk, shared by the demo's processes.
        folder = VAR_DIR / "broker"
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
            # The default 1 s poll would add a second to every hop of a chain.
            "polling_interval": 0.05,
        }
    # Countdowns never exceed the sweep horizon (<= 30 min, enforced by Settings), so the
    # default 1 h visibility timeout never redelivers a waiting message.
    return {"visibility_timeout": 3600}


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
        task_time_limit=max(90, int(settings.ai_timeout_s * 6)),
        # After a broker reconnect, cancel acks_late tasks rather than run them twice.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        # Chains need no result backend; the database row is the result.
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options=broker_options(settings),
        # The embedded broker's writes must be atomic (see workers/broker.py).
        broker_transport=(
            "workers.broker:Transport" if settings.broker_url.startswith("filesystem") else None
        ),
        # structlog writes to stderr itself; keep Celery from re-wrapping it.
        worker_redirect_stdouts=False,
        worker_hijack_root_logger=False,
        # The monitor, delivery and batches get their own queue: behind a deep backlog of stage
        # messages they would otherwise expire before a worker reached them (and decisions
        # would wait for the backlog to reach their receivers). Workers consume both in turn.
        # The sweep stays behind the backlog on purpose: while the queue is deep it does not
        # claim more (and so does not let leases run out on records nobody has reached).
        task_queues=(
            Queue("celery", routing_key="celery"),
            Queue("control", routing_key="control"),
        ),
        task_routes={
            t: {"queue": "control"}
            for t in ("enrichment.monitor", "enrichment.deliver", "enrichment.batches")
        },
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        beat_schedule=beat_schedule.schedule(settings),
    )
    return app


app = make_app(get_settings())


@signals.worker_init.connect
def _before_fork(**_kwargs) -> None:
    providers.preload(get_settings())


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
