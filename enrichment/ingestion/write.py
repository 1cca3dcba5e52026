"""Write one chunk of valid lines: the one write path for `enrichment ingest` and the API.

One transaction per chunk. The fast path plans the whole chunk (see `plan`) and writes it
with one INSERT per table plus one executemany UPDATE per kind of change. If that fails (an
id stored meanwhile by a concurrent writer, a lock cycle, a value the database refuses), its
savepoint is rolled back and the chunk goes again one savepoint per line, so a conflict costs
at most that line and never half of one.

Concurrency: the chunk's stored orders are read FOR UPDATE (in id order, so two writers lock
in the same order) before their exceptions are read, so two loads merging events into one
order, or updating or reopening one record, queue instead of overwriting each other. Two
loads inserting one new order collide on its unique key instead: the later one falls back
to line by line and then finds the order stored. Every statement names the tenant.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import ColumnElement, bindparam, insert, null, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from enrichment.core import db
from enrichment.core.models import REOPENED, EnrichmentAttempt, ExceptionRecord, Order, utcnow
from enrichment.ingestion.attach import attach
from enrichment.ingestion.lines import Good, Key
from enrichment.ingestion.plan import (
    REJECTED,
    ItemResult,
    OrderWrite,
    Plan,
    RecordUpdate,
    StoredException,
    StoredOrder,
    plan_chunk,
)

log = structlog.get_logger(__name__)

# Tries per line on the slow path: a lost race succeeds on the next try, which sees the winner.
LINE_TRIES = 3
_INPUTS = ("reason_code", "severity", "notes", "priority", "reference_label")
# The AI result a reopen clears; the audit row keeps it (datetimes as ISO strings).
_RESULT = (
    "ai_label", "ai_confidence", "ai_notes", "ai_analysis", "ai_resolution", "ai_source",
    "enrichment_state", "enriched_at", "escalated_at", "escalation_reason",
)  # fmt: skip

_R, _O = ExceptionRecord.__table__.c, Order.__table__.c


def _json_safe(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _with_keys(tenant_id: Any, external_id: Any, keys: set[Key]) -> ColumnElement[bool]:
    """`(tenant_id, external_id) in keys`, as one `external_id IN (...)` per tenant, which
    PostgreSQL can answer from the unique (tenant_id, external_id) index."""
    by_tenant: dict[int, list[str]] = {}
    for tenant, ext in keys:
        by_tenant.setdefault(tenant, []).append(ext)
    return or_(*((tenant_id == t) & external_id.in_(ids) for t, ids in by_tenant.items()))


def _stored_exception(row: Any) -> StoredException:
    values = row._mapping
    return StoredException(
        id=row.id,
        order_external_id=row.order_external_id,
        inputs={name: values[name] for name in _INPUTS},
        finished=row.enriched_at is not None or row.escalated_at is not None,
        result={name: _json_safe(values[name]) for name in _RESULT},
    )


def _stored_exceptions(session: Session, keys: set[Key]) -> dict[Key, StoredException]:
    """The stored exceptions among `keys`, read after their orders are locked.

    No lock of their own: every writer of an exception's inputs holds its order's lock
    first (an exception never moves), and a finished record has no stage writing to it (its
    lease is cleared), so this read is current for the update or reopen it decides."""
    if not keys:
        return {}
    rec = ExceptionRecord
    columns = [getattr(rec, name) for name in (*_INPUTS, *_RESULT)]
    stmt = (
        select(rec.id, rec.tenant_id, rec.external_id, *columns,
               Order.external_id.label("order_external_id"))
        .join(Order, (Order.id == rec.order_id) & (Order.tenant_id == rec.tenant_id))
        .where(_with_keys(rec.tenant_id, rec.external_id, keys))
    )  # fmt: skip
    rows = session.execute(stmt)
    return {(r.tenant_id, r.external_id): _stored_exception(r) for r in rows}


def _stored_orders(session: Session, keys: set[Key]) -> dict[Key, StoredOrder]:
    if not keys:
        return {}
    stmt = (
        select(Order.id, Order.tenant_id, Order.external_id, Order.payload, Order.events)
        .where(_with_keys(Order.tenant_id, Order.external_id, keys))
        .order_by(Order.id)
        # Two loads merging events into one order must not overwrite each other's.
        .with_for_update()
    )
    rows = session.execute(stmt)
    return {(r.tenant_id, r.external_id): StoredOrder(r.id, r.payload, r.events) for r in rows}


def _plan(session: Session, lines: list[Good]) -> Plan:
    # Orders first: their locks make the exceptions read next current (see above).
    orders = _stored_orders(session, {g.order_key for g in lines})
    exceptions = _stored_exceptions(session, {g.exception_key for g in lines})
    return plan_chunk(lines, exceptions, orders)


def _order_row(write: OrderWrite) -> dict[str, Any]:
    return {
        "tenant_id": write.tenant_id,
        "external_id": write.external_id,
        "payload": write.payload,
        "events": write.events,
    }


def _record_row(good: Good, order_id: int, now: datetime) -> dict[str, Any]:
    exc = good.line.exception
    return {
        "tenant_id": good.tenant_id,
        "order_id": order_id,
        "external_id": exc.external_id,
        **good.inputs(),
        "enrichment_state": {},
        "next_attempt_at": now,  # due at once: the next sweep picks it up
        "created_at": now,
        "updated_at": now,
    }


def _by_id(table_columns: Any) -> tuple:
    return table_columns.id == bindparam("b_id"), table_columns.tenant_id == bindparam("b_tenant")


_update_order = (
    update(Order.__table__)
    .where(*_by_id(_O))
    .values(
        payload=bindparam("b_payload", type_=_O.payload.type),
        events=bindparam("b_events", type_=_O.events.type),
    )
)
_update_inputs = (
    update(ExceptionRecord.__table__)
    .where(*_by_id(_R))
    .values(
        {**{name: bindparam(f"b_{name}") for name in _INPUTS}, "updated_at": bindparam("b_now")}
    )
)
# A reopened record is due again at once, with nothing of its old result left to read.
_reopen = (
    update(ExceptionRecord.__table__)
    .where(*_by_id(_R))
    .values({
        **{name: null() for name in ("ai_label", "ai_confidence", "ai_notes", "ai_analysis",
                                     "ai_resolution", "enriched_at", "escalated_at",
                                     "escalation_reason", "lease_token", "lease_expires_at")},
        "ai_source": {},
        "enrichment_state": {},
        "enrichment_retry_count": 0,
        "next_attempt_at": bindparam("b_now"),
    })
)  # fmt: skip


def _write_orders(session: Session, plan: Plan) -> dict[Key, int]:
    """Insert the new orders and update the merged ones; every order id the plan needs."""
    ids = dict(plan.order_ids)
    inserts = [w for w in plan.orders.values() if w.id is None]
    if inserts:
        stmt = insert(Order).returning(Order.id, sort_by_parameter_order=True)
        new_ids = session.scalars(stmt, [_order_row(w) for w in inserts]).all()
        ids.update(zip([(w.tenant_id, w.external_id) for w in inserts], new_ids, strict=True))
    updates = [
        {"b_id": w.id, "b_tenant": w.tenant_id, "b_payload": w.payload, "b_events": w.events}
        for w in plan.orders.values()
        if w.id is not None
    ]
    if updates:
        session.execute(_update_order, updates)
    return ids


def _audit_row(change: RecordUpdate, now: datetime) -> dict[str, Any]:
    """The reopen's attempt row: no stage ran and no AI was called; it keeps the old result."""
    return {
        "tenant_id": change.good.tenant_id,
        "record_id": change.stored.id,
        "stage": "reopen",
        "outcome": REOPENED,
        "provider": "ingest",
        "latency_s": 0.0,
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_write_tokens": 0,
        "cache_read_tokens": 0,
        "cost_usd": 0.0,
        "detail": change.stored.result,
        "created_at": now,
    }


def _write_updates(session: Session, changes: list[RecordUpdate], now: datetime) -> None:
    if not changes:
        return
    rows = []
    for change in changes:
        good = change.good
        row = {f"b_{name}": value for name, value in good.inputs().items()}
        rows.append({**row, "b_id": change.stored.id, "b_tenant": good.tenant_id, "b_now": now})
    session.execute(_update_inputs, rows)
    reopen = [c for c in changes if c.reopen]
    if reopen:
        keys = [{"b_id": c.stored.id, "b_tenant": c.good.tenant_id, "b_now": now} for c in reopen]
        session.execute(_reopen, keys)
        session.execute(insert(EnrichmentAttempt), [_audit_row(c, now) for c in reopen])


def _write(session: Session, lines: list[Good]) -> list[ItemResult]:
    plan, now = _plan(session, lines), utcnow()
    attached: dict[int, ItemResult] = {}
    if plan.new or plan.orders:
        ids = _write_orders(session, plan)
        # A new exception the order analysis raised first takes the raised one over.
        attached = attach(session, plan.new, ids, now) if plan.new else {}
        rows = [_record_row(g, ids[g.order_key], now) for g in plan.new if g.pos not in attached]
        if rows:
            session.execute(insert(ExceptionRecord), rows)
    _write_updates(session, plan.updates, now)
    return [attached.get(r.pos, r) for r in plan.results()]


def _write_one(session: Session, good: Good) -> ItemResult:
    """The slow path: one savepoint per line, so a conflict costs only that line."""
    for _ in range(LINE_TRIES):
        try:
            with session.begin_nested():
                return _write(session, [good])[0]
        except DBAPIError as exc:  # a unique key taken meanwhile, or a value refused
            # The database's words go to the log only (with the API's request id), never
            # into an answer: they name tables, columns and values.
            log.warning("ingest.row_refused", pos=good.pos, error=str(exc.orig)[:500])
            reason = "duplicate or conflicting row (the database refused it; the log says why)"
    ext = good.line.exception.external_id
    return ItemResult(good.pos, REJECTED, ext, None, reason)


def write_chunk(factory: sessionmaker[Session], lines: list[Good]) -> list[ItemResult]:
    """Write `lines` (valid, in input order, each exception once) in one transaction; one
    result per line, in input order."""
    if not lines:
        return []
    with factory.begin() as session:
        db.write_lock(session)
        try:
            with session.begin_nested():
                return _write(session, lines)
        except DBAPIError:
            # Another writer got there between our read and our write: line by line.
            return [_write_one(session, good) for good in lines]
