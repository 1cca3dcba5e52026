"""One multi-commit operation, run in its own process for tests/test_crash_points.py, which
arms a crash point (ENRICHMENT_CRASH_POINTS) and expects this process to die by SIGKILL.

    python -m tests.crash_runner OPERATION '{"json": "arguments"}'

Everything else comes from the environment, as in a worker: DATABASE_URL, the provider's
ANTHROPIC_* variables (the test's fake server), ENRICHMENT_WEBHOOK_*. The same domain calls
the Celery tasks make, so a kill lands where it would in production.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from enrichment.core import db
from enrichment.core.models import Tenant, utcnow
from enrichment.core.settings import WebhookConfig, get_settings


def batch_submit(_args: dict[str, Any]) -> Any:
    from enrichment.batches import submit
    from enrichment.providers.anthropic import AnthropicProvider

    settings = get_settings()
    return submit.submit_due(_factory(), AnthropicProvider(settings), settings)


def batch_apply(args: dict[str, Any]) -> Any:
    """`later_s`: the clock moved forward, so a "submitting" batch is stale."""
    from enrichment.batches import apply
    from enrichment.providers.anthropic import AnthropicProvider

    settings = get_settings()
    now = utcnow() + timedelta(seconds=args.get("later_s", 0.0))
    return apply.poll_and_apply(_factory(), AnthropicProvider(settings), settings, now=now)


def requeue(args: dict[str, Any]) -> Any:
    from workers import tasks

    return tasks.requeue(args["tenant"])  # the task body, in this process


def deliver(_args: dict[str, Any]) -> Any:
    from enrichment.delivery.deliver import deliver_due

    return deliver_due(_factory(), WebhookConfig.from_env())


def ingest(args: dict[str, Any]) -> Any:
    """`chunk_size`: lines per transaction, small so a short file spans several."""
    from enrichment.ingestion import ingest as ingestion

    ingestion.CHUNK_SIZE = args["chunk_size"]
    return ingestion.ingest_file(_factory(), args["path"], create_tenants=True)


def review(args: dict[str, Any]) -> Any:
    from sqlalchemy import select

    from enrichment.reviews import decide

    body = decide.ReviewIn(label=args["label"], actions=args["actions"], reviewer="ops")
    with _factory().begin() as s:
        tenant = s.scalars(select(Tenant).where(Tenant.name == args["tenant"])).one()
        return decide.submit(s, tenant, args["record_id"], body, actor="reviewer:ops")


OPERATIONS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "batch_submit": batch_submit,
    "batch_apply": batch_apply,
    "requeue": requeue,
    "deliver": deliver,
    "ingest": ingest,
    "review": review,
}


def _factory():
    return db.session_factory(get_settings().database_url)


if __name__ == "__main__":
    operation, raw = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "{}"
    print(f"finished: {OPERATIONS[operation](json.loads(raw))!r}", flush=True)
