"""A watched order's analysis written: the watch's columns, the exceptions it raises with their
`order.at_risk` events, and the attempt row, in one transaction.

A problem is raised once per order: not when an exception of the order already names it (its
reason code, its AI label or a person's label: the tenant's own, or one raised before). The
order row is locked first (FOR UPDATE on PostgreSQL), the lock ingestion takes before it
writes the order's exceptions, so a tenant's exception arriving meanwhile is seen by one side
or the other, never missed by both. The raised exception is due at once: the next sweep
classifies and resolves it like any other.

A raised exception is read by the stages as of when it was raised: its context's events are
the order's plus an `exception_opened` at its `created_at` (`context_events`), the way a
tenant's feed says when its exception was opened. Without it the order's last event (say
`packed`, 40 h before) would be the end of every wait, and the wait that raised the problem
would not be late to the classifier.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Update, insert, select

from enrichment.core import outbox
from enrichment.core.models import (
    EXCEPTION,
    RAISED_BY_AI,
    EnrichmentAttempt,
    ExceptionRecord,
    Order,
    bounded_id,
    utcnow,
)
from enrichment.core.outcomes import StageRun
from enrichment.core.schemas import OrderProblem
from enrichment.core.taxonomy import reason_label

RAISED_SEVERITY = "medium"
OPENED = "exception_opened"  # the event type that says when an exception was opened
_R = ExceptionRecord


def context_events(
    order_events: list[dict[str, Any]] | None, source: str | None, created_at: datetime
) -> list[dict[str, Any]]:
    """The events an exception's stages read: the order's, and for one this analysis raised,
    its opening at `created_at` after them (`exception_opened`, the system's own event)."""
    events = list(order_events or [])
    if source == RAISED_BY_AI:
        at, detail = created_at.isoformat(), f"raised by {RAISED_BY_AI}"
        events.append({"source": "system", "type": OPENED, "at": at, "detail": detail})
    return events


def raised_id(order_external_id: str, label: str) -> str:
    """A raised exception's external id, until the tenant's own attaches to it."""
    return bounded_id(f"ai:{label}:", order_external_id)


def named_problems(conn: Connection, tenant_id: int, order_id: int) -> set[str]:
    """The labels the order's exceptions already name (reason code, AI label, final label)."""
    rows = conn.execute(
        select(_R.reason_code, _R.ai_label, _R.final_label).where(
            _R.tenant_id == tenant_id, _R.order_id == order_id, _R.record_type == EXCEPTION
        )
    )
    named = set()
    for row in rows:
        code = reason_label(row.reason_code)
        named |= {str(code) if code else None, row.ai_label, row.final_label}
    return named - {None}


def write(conn: Connection, run: StageRun, attempt: dict[str, Any], guarded: Update) -> bool:
    """The watch's update (guarded by its lease) and, if it landed, each new problem raised;
    the attempt row either way. False when the guard failed."""
    with conn.engine.begin() as tx:  # a transaction of its own: `conn` autocommits
        landed = tx.execute(guarded).rowcount == 1
        if landed and run.raises:
            _lock_order(tx, run)
            named = named_problems(tx, run.tenant_id, run.order_id)
            for problem in run.raises:
                if str(problem.label) not in named:
                    _raise(tx, run, problem, utcnow())
        outcome = attempt["outcome"] if landed else "stale"
        tx.execute(insert(EnrichmentAttempt).values({**attempt, "outcome": outcome}))
    return landed


def _lock_order(tx: Connection, run: StageRun) -> None:
    stmt = select(Order.id).where(Order.id == run.order_id, Order.tenant_id == run.tenant_id)
    tx.execute(stmt.with_for_update())


def _raise(tx: Connection, run: StageRun, problem: OrderProblem, now: datetime) -> None:
    label = str(problem.label)
    external_id = raised_id(run.order_external_id, label)
    record_id = tx.execute(
        insert(_R)
        .values(
            tenant_id=run.tenant_id,
            order_id=run.order_id,
            external_id=external_id,
            record_type=EXCEPTION,
            source=RAISED_BY_AI,
            reason_code=label,
            severity=RAISED_SEVERITY,
            notes="; ".join(problem.evidence)[:2000] or None,
            enrichment_state={},
            ai_source={},
            next_attempt_at=now,  # due at once: the next sweep classifies and resolves it
            created_at=now,
            updated_at=now,
        )
        .returning(_R.id)
    ).scalar_one()
    data = {
        "tenant": run.tenant,
        "record": external_id,
        "order": run.order_external_id,
        "problem": label,
        "confidence": problem.confidence,
        "evidence": list(problem.evidence),
    }
    row = outbox.event_row(run.tenant_id, record_id, outbox.ORDER_AT_RISK, data, now=now)
    tx.execute(outbox.insert_events([row]))
