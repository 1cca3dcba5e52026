"""Recovering the records whose messages the broker lost.

A lease stands for "a message for this record is somewhere in the broker". When the broker
loses its state (a Redis restart without persistence, a FLUSHDB), every such message is gone,
but each lease would still keep the sweep away from its record until it expires: up to
`sweep_horizon_s + lease_ttl_s` (16 min with the defaults). Once the loss is known
(workers/broker_watch.py), expiring those leases at once lets the next claim take the records
again. A chain still running in a worker when the broker went away writes nothing stale: its
lease token is replaced by the new claim, and every stage write is guarded by the token
(pipeline.py). A record in a Message Batch is left alone: its request is with the AI
provider, not in the broker.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from enrichment.core.due import in_chain
from enrichment.core.models import ExceptionRecord as R
from enrichment.core.models import in_backlog
from enrichment.core.settings import Settings


def expire_leases(
    session: Session, settings: Settings, *, now: datetime, tenant_id: int | None = None
) -> int:
    """Make every unexpired chain lease of a backlog record expire at `now`; returns how many.

    Every unexpired lease at the moment the loss is seen was made before it (as far as this
    sweep can tell), so all of them go. The token stays: until the record is claimed again, a
    stage that finishes in a worker still writes a genuine result. Idempotent, so two beats
    recovering at once do no harm. `tenant_id` limits it to one tenant; None: every tenant,
    which is what a broker loss needs (the broker is shared by all of them).
    """
    stmt = (
        update(R)
        .where(in_backlog(), in_chain(now, settings))
        # updated_at is kept: expiring a lease is not a change of content.
        .values(lease_expires_at=now, updated_at=R.updated_at)
        .execution_options(synchronize_session=False)
    )
    if tenant_id is not None:
        stmt = stmt.where(R.tenant_id == tenant_id)
    return session.execute(stmt).rowcount
