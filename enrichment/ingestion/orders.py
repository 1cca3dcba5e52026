"""Orders in without an exception, and their events as they happen: each order is watched.

`POST /api/enrichment/orders/{tenant}` takes `{"items": [ORDER, ...]}` (each a records item's
`order`, validated by `lines.parse_order`: the same model, limits and messages); the events
route appends events to one stored order. Orders merge as ingestion merges them (the payload
replaced, events merged by (source, type, at) in time order: `plan.merge_events`).

Each order gets one watch: an `exception_records` row of record_type "order" (external id
`order:<order id>`), whose only stage is the order analysis (core/order_watch.py). A new
order is due at once; an order whose payload or events changed is due again at once, and its
lease is broken, so an analysis still running on the old events writes nothing (its attempt
is `stale`) and the next sweep reads the new ones. A closed watch (delivered, cancelled,
escalated) stays closed. One transaction per body; the orders are locked FOR UPDATE in id
order, as ingestion locks them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import insert, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from enrichment.core import db
from enrichment.core.models import ORDER, ExceptionRecord, Order, bounded_id, utcnow
from enrichment.core.record_limits import MAX_EVENTS
from enrichment.core.settings import RecordLimits, get_settings
from enrichment.ingestion.items import BodyError
from enrichment.ingestion.lines import EventIn, LineError, OrderIn, parse_order
from enrichment.ingestion.plan import CREATED, REJECTED, UNCHANGED, UPDATED, merge_events

log = structlog.get_logger(__name__)
REFUSED = "duplicate or conflicting row (the database refused it; send it again)"
WATCH_REASON = "ORDER_WATCH"  # a watch's reason_code: it is no exception of the tenant's
WATCH_SEVERITY = "medium"
_R = ExceptionRecord


def watch_id(order_external_id: str) -> str:
    """The watch's external id: `order:<order id>`, or a digest of a long order id (never
    cut: two long ids alike in their first characters must not get one watch id)."""
    return bounded_id("order:", order_external_id)


@dataclass(frozen=True)
class OrderResult:
    pos: int
    result: str  # created, updated, unchanged or rejected
    external_id: str | None
    field: str | None = None
    reason: str | None = None


def parse_orders(items: list[Any], limits: RecordLimits) -> tuple[list, list[OrderResult]]:
    """(pos, OrderIn) for the valid items, and a rejection for each other one (an order named
    twice in one body: the second)."""
    goods, rejected, first = [], [], {}
    for pos, item in enumerate(items):
        ext = item.get("external_id") if isinstance(item, dict) else None
        ext = ext if isinstance(ext, str) else None
        try:
            order = parse_order(item, limits=limits)
            if order.external_id in first:
                where = f"first on item {first[order.external_id]}"
                raise LineError(f"duplicate order external_id: {where}", "external_id")
        except LineError as exc:
            rejected.append(OrderResult(pos, REJECTED, ext, exc.field, str(exc)))
            continue
        first[order.external_id] = pos
        goods.append((pos, order))
    return goods, rejected


def parse_events(raw: bytes) -> list[EventIn]:
    """The events route's body `{"events": [...]}` (1 to MAX_EVENTS), each event validated as
    an order's events are; BodyError or LineError with one line."""
    try:
        body = json.loads(raw)
    except (RecursionError, ValueError):
        raise BodyError("body is not valid JSON") from None
    if (
        not isinstance(body, dict)
        or set(body) != {"events"}
        or not isinstance(body["events"], list)
    ):
        raise BodyError('body must be a JSON object {"events": [...]}')
    if not 1 <= len(body["events"]) <= MAX_EVENTS:
        raise BodyError(f"events has {len(body['events'])} entries; send 1 to {MAX_EVENTS}")
    # An order's events, validated by the order's own rules (messages name `events.N.field`).
    item = {"external_id": "-", "payload": {}, "events": body["events"]}
    return parse_order(item, limits=get_settings().record_limits).events


def ingest_orders(
    factory: sessionmaker[Session], tenant_id: int, items: list[Any]
) -> list[OrderResult]:
    """Validate and write the orders of one body; one result per item, in order."""
    goods, results = parse_orders(items, get_settings().record_limits)
    if goods:
        with factory.begin() as session:
            db.write_lock(session)
            stored = _locked(session, tenant_id, [o.external_id for _, o in goods])
            now = utcnow()
            for pos, order in goods:
                results.append(_one(session, tenant_id, pos, order, stored, now))
    return sorted(results, key=lambda r: r.pos)


def _one(
    session: Session, tenant_id: int, pos: int, order: OrderIn, stored: dict, now: datetime
) -> OrderResult:
    """One order in its own savepoint: a row the database refuses (a new order inserted by a
    concurrent writer meanwhile, an id already taken) costs that item only."""
    events = [e.model_dump(mode="json") for e in order.events]
    try:
        with session.begin_nested():
            result = _upsert(session, tenant_id, order, events, stored, now)
    except DBAPIError as exc:
        # The database's words go to the log only: they name tables, columns and values.
        log.warning("orders.row_refused", pos=pos, error=str(exc.orig)[:500])
        stored.pop(order.external_id, None)
        return OrderResult(pos, REJECTED, order.external_id, None, REFUSED)
    return OrderResult(pos, result, order.external_id)


def append_events(
    factory: sessionmaker[Session], tenant_id: int, external_id: str, events: list[EventIn]
) -> int | None:
    """Merge `events` into the stored order; how many were new, None for an unknown order.
    LineError when the order would hold more than MAX_EVENTS events."""
    with factory.begin() as session:
        stored = _locked(session, tenant_id, [external_id]).get(external_id)
        if stored is None:
            return None
        new = [e.model_dump(mode="json") for e in events]
        merged = merge_events(stored.events, new)
        if len(merged) > MAX_EVENTS:
            raise LineError(f"the order would hold {len(merged)} events; at most {MAX_EVENTS}")
        added = len(merged) - len(stored.events)
        if added:
            _write_order(session, stored, stored.payload, merged)
            _watch(session, stored, changed=True, now=utcnow())
        return added


def _locked(session: Session, tenant_id: int, external_ids: list[str]) -> dict[str, Order]:
    stmt = (
        select(Order)
        .where(Order.tenant_id == tenant_id, Order.external_id.in_(external_ids))
        .order_by(Order.id)
        .with_for_update()  # two writers of one order queue instead of losing events
    )
    return {o.external_id: o for o in session.scalars(stmt)}


def _upsert(
    session: Session,
    tenant_id: int,
    order: OrderIn,
    events: list[dict[str, Any]],
    stored: dict[str, Order],
    now: datetime,
) -> str:
    found = stored.get(order.external_id)
    if found is None:
        found = Order(
            tenant_id=tenant_id, external_id=order.external_id, payload=order.payload, events=[]
        )
        found.events = merge_events([], events)
        session.add(found)
        session.flush()
        _watch(session, found, changed=True, now=now)
        return CREATED
    merged = merge_events(found.events, events)
    changed = merged != found.events or order.payload != found.payload
    if changed:
        _write_order(session, found, order.payload, merged)
    made = _watch(session, found, changed=changed, now=now)
    return UPDATED if changed or made else UNCHANGED


def _write_order(session: Session, order: Order, payload: dict, events: list) -> None:
    session.execute(
        update(Order)
        .where(Order.id == order.id, Order.tenant_id == order.tenant_id)
        .values(payload=payload, events=events)
    )


def _watch(session: Session, order: Order, *, changed: bool, now: datetime) -> bool:
    """Make the order's watch, or make an open one due now; True when it was made."""
    watch = session.execute(
        select(_R.id, _R.enriched_at, _R.escalated_at).where(
            _R.tenant_id == order.tenant_id, _R.order_id == order.id, _R.record_type == ORDER
        )
    ).first()
    if watch is None:
        session.execute(insert(_R).values(_watch_row(order, now)))
        return True
    if changed and watch.enriched_at is None and watch.escalated_at is None:
        session.execute(
            update(_R)
            .where(_R.id == watch.id, _R.tenant_id == order.tenant_id)
            .values(next_attempt_at=now, lease_token=None, lease_expires_at=None, updated_at=now)
        )
    return False


def _watch_row(order: Order, now: datetime) -> dict[str, Any]:
    return {
        "tenant_id": order.tenant_id,
        "order_id": order.id,
        "external_id": watch_id(order.external_id),
        "record_type": ORDER,
        "reason_code": WATCH_REASON,
        "severity": WATCH_SEVERITY,
        "enrichment_state": {},
        "ai_source": {},
        "next_attempt_at": now,  # analysed on arrival: the next sweep claims it
        "created_at": now,
        "updated_at": now,
    }
