"""Real Celery worker and beat subprocesses on the test broker (Redis or RabbitMQ) and
PostgreSQL, and what sends them stage messages from the test process.

The processes come from `enrichment.tooling.processes`, the one manager of fleet subprocesses;
this module only adds the test environment.
"""

from __future__ import annotations

from pathlib import Path

from celery import Celery, chain

from enrichment.core.settings import Settings
from enrichment.tooling.processes import (
    ROOT,
    Proc,
    scrubbed_env,
    start_beat,
    start_worker,
    stop_all,
    wait_for,
)
from workers import queues

__all__ = [
    "ROOT",
    "Proc",
    "Sender",
    "fleet_env",
    "publisher",
    "start_beat",
    "start_worker",
    "stop_all",
    "wait_for",
]


def fleet_env(db_url: str, broker_url: str, var_dir: Path, **overrides: str) -> dict[str, str]:
    """A fleet on the test services with the local provider and a fast sweep; `overrides` last."""
    test_env = dict(
        DATABASE_URL=db_url,
        CELERY_BROKER_URL=broker_url,
        ENRICHMENT_VAR_DIR=str(var_dir),
        ENRICHMENT_AI_PROVIDER="local",
        ENRICHMENT_SWEEP_INTERVAL_S="0.5",
        ENRICHMENT_LOG_FORMAT="json",
    )
    return scrubbed_env(**{**test_env, **overrides})


STAGE_TASKS = ("enrichment.analyze", "enrichment.classify", "enrichment.resolve")


class Sender:
    """Sends the fleet's stage messages by task name through `app`: the chain a claim
    enqueues (as workers.tasks.enqueue_chain does), or one stage message on its own."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def chain(self, record_id: int, lease_token: str, countdown_s: float) -> None:
        steps = [
            self.app.signature(t, (record_id, lease_token), immutable=True) for t in STAGE_TASKS
        ]
        chain(*steps, app=self.app).apply_async(countdown=countdown_s)

    def stage(self, task: str, record_id: int, lease_token: str) -> None:
        self.app.send_task(task, (record_id, lease_token))


def publisher(broker_url: str) -> Celery:
    """An app in this process that only publishes to `broker_url`, for a worker subprocess."""
    return queues.bare_app("publisher", Settings(broker_url=broker_url))
