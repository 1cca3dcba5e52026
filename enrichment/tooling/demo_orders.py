"""The demo's orders (issue 25): a few orders flagged before the tenant's exceptions arrive.

Before the fleet starts, the demo ingests a handful of orders with no exception (as `POST
/api/enrichment/orders/{tenant}` does): two healthy ones (released to pick two hours ago; and
one delivered) and three whose promise is already broken, their timestamps set so the
deadline has passed (released to pick 30 h ago and never picked: pick deadline 24 h; picked
15 h ago and never packed: 12 h; packed 40 h ago and no carrier scan: 36 h). The fleet's
order analysis looks at each; a problem it is sure of raises an exception, classified and
resolved like any other. The demo then prints which orders were flagged, with the label and
confidence, sends the tenant's own exception (in the tenant's words: LATE_PICK, NO_SCAN) for
two of them as the records route would, and shows each attached to the raised one with the
lead time: how long before it the fleet had raised the problem. In the demo that is seconds
(it sends them at once); in production it is how much earlier than the tenant's own rules or
the customer the fleet saw it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, select

from enrichment.core import tenants
from enrichment.core.models import (
    RAISED_BY_AI,
    ExceptionRecord,
    Order,
    OutboxEvent,
    utcnow,
)
from enrichment.core.order_raise import raised_id
from enrichment.core.text import duration
from enrichment.ingestion import items as records_in
from enrichment.ingestion import orders as orders_in
from enrichment.ingestion.orders import watch_id
from enrichment.tooling.processes import Proc

R = ExceptionRecord
WAIT_S = 90.0  # after the backlog: how long the orders' analysis and raised records may take
ADDRESS = {"address1": "1 Main St", "city": "Springfield", "zip": "12345", "country_code": "US"}
ITEMS = [{"sku": "SKU-1", "title": "Mug", "quantity": 1, "price": "9.50"}]
PAYLOAD = {"financial_status": "paid", "shipping_address": ADDRESS, "line_items": ITEMS}
# The tenant's own words for the problems it sends exceptions for (taxonomy.REASON_ALIASES).
TENANT_WORDS = {"PICK_DELAY": "LATE_PICK", "PACK_DELAY": "LATE_PACK", "MISSING_SCAN": "NO_SCAN"}
CONFIRMED = 2  # flagged orders the tenant's own exception then arrives for


@dataclass(frozen=True)
class DemoOrder:
    """One demo order: its milestones as (event, hours before now), and what it shows."""

    suffix: str
    steps: tuple[tuple[str, float], ...]
    story: str


ORDERS = (
    DemoOrder("1", (("payment_captured", 3), ("allocated", 2.5), ("released_to_pick", 2)),
              "healthy: released to pick 2 h ago, pick deadline ahead"),
    DemoOrder("2", (("payment_captured", 50), ("allocated", 49), ("released_to_pick", 48),
                    ("picked", 46), ("packed", 45), ("picked_up", 40), ("delivered", 10)),
              "healthy: delivered, no longer watched"),
    DemoOrder("3", (("payment_captured", 32), ("allocated", 31), ("released_to_pick", 30)),
              "released to pick 30 h ago, never picked (pick deadline 24 h)"),
    DemoOrder("4", (("payment_captured", 20), ("allocated", 19), ("released_to_pick", 18),
                    ("picked", 15)),
              "picked 15 h ago, never packed (pack deadline 12 h)"),
    DemoOrder("5", (("payment_captured", 46), ("allocated", 45), ("released_to_pick", 44),
                    ("picked", 42), ("packed", 40)),
              "packed 40 h ago, no carrier scan (hand-over deadline 36 h)"),
)  # fmt: skip


def prefix_of(batch: str) -> str:
    """The orders' id prefix for a demo batch ('demo-1a2b3c4d-' -> 'ord-1a2b3c4d-'): apart
    from the batch's records, so the backlog's progress and summary count only those."""
    return "ord-" + batch.removeprefix("demo-")


def _item(prefix: str, order: DemoOrder, now: datetime) -> dict:
    events = [
        {"source": "wms", "type": kind, "at": (now - timedelta(hours=h)).isoformat(), "detail": ""}
        for kind, h in order.steps
    ]
    return {"external_id": prefix + order.suffix, "payload": PAYLOAD, "events": events}


def ingest(factory, tenant: str, batch: str) -> str:
    """Ingest the demo orders for `tenant` (it exists); their id prefix."""
    prefix, now = prefix_of(batch), utcnow()
    with factory() as s:
        tenant_id = tenants.require(s, tenant).id
    results = orders_in.ingest_orders(factory, tenant_id, [_item(prefix, o, now) for o in ORDERS])
    created = sum(r.result == "created" for r in results)
    print(f"ingested {created} orders for {tenant} with no exception, each watched by the fleet")
    return prefix


def _pending(s, tenant_id: int, prefix: str) -> int:
    """Watches not analysed yet, and raised exceptions not enriched or escalated yet."""
    watches = [watch_id(prefix + o.suffix) for o in ORDERS]
    unlooked = s.scalar(
        select(func.count()).where(
            R.tenant_id == tenant_id, R.external_id.in_(watches), R.ai_analysis.is_(None)
        )
    )
    undecided = _raised(tenant_id, prefix, func.count()).where(
        R.enriched_at.is_(None), R.escalated_at.is_(None)
    )
    return unlooked + s.scalar(undecided)


def wait_analysed(factory, tenant: str, prefix: str, alive) -> bool:
    """Wait (bounded) until every demo order was analysed and what it raised decided."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and alive():
        with factory() as s:
            if not _pending(s, tenants.require(s, tenant).id, prefix):
                return True
        time.sleep(0.5)
    print(f"the demo orders were not all analysed within {WAIT_S:.0f}s")
    return False


@dataclass(frozen=True)
class Flag:
    order: str
    label: str
    confidence: float
    evidence: str
    raised: str  # the raised exception's external id
    decided: str  # what became of it (`_decided`)


def flagged(factory, tenant: str, prefix: str) -> tuple[list[Flag], list[str]]:
    """(each problem the analysis raised, by order; the orders it raised nothing for)."""
    with factory() as s:
        tenant_id = tenants.require(s, tenant).id
        watches = [watch_id(prefix + o.suffix) for o in ORDERS]
        analyses = dict(
            s.execute(
                select(R.external_id, R.ai_analysis).where(
                    R.tenant_id == tenant_id, R.external_id.in_(watches)
                )
            ).all()
        )
        columns = (R.external_id, R.ai_label, R.ai_confidence, R.escalated_at)
        raised = {
            r.external_id: _decided(r) for r in s.execute(_raised(tenant_id, prefix, *columns))
        }
    flags, calm = [], []
    for o in ORDERS:
        order = prefix + o.suffix
        problems = (analyses.get(watch_id(order)) or {}).get("problems", [])
        mine = [_flag(order, p, raised) for p in problems if raised_id(order, p["label"]) in raised]
        flags += mine
        calm += [] if mine else [order]
    return flags, calm


def _raised(tenant_id: int, prefix: str, *columns):
    """`columns` of the exceptions the analysis raised on the demo orders."""
    return (
        select(*columns)
        .select_from(R)
        .join(Order, and_(Order.id == R.order_id, Order.tenant_id == R.tenant_id))
        .where(R.tenant_id == tenant_id, Order.external_id.like(f"{prefix}%"))
        .where(R.source == RAISED_BY_AI)
    )


def _decided(row) -> str:
    """What became of a raised exception: its classification, or its escalation."""
    if row.escalated_at is not None:
        return "escalated to a person"
    return f"classified {row.ai_label} {row.ai_confidence:.2f}" if row.ai_label else "pending"


def _flag(order: str, problem: dict, raised: dict[str, str]) -> Flag:
    evidence = (problem.get("evidence") or [""])[0]
    ext = raised_id(order, problem["label"])
    return Flag(order, problem["label"], problem["confidence"], evidence, ext, raised[ext])


def print_flagged(flags: list[Flag], calm: list[str]) -> None:
    story = {o.suffix: o.story for o in ORDERS}
    print(f"\norders flagged by the fleet before any exception of the tenant's: {len(flags)}")
    for f in flags:
        print(f"  {f.order}  flagged {f.label} {f.confidence:.2f}  ({f.evidence});"
              f" raised {f.raised}, {f.decided}")  # fmt: skip
    for order in calm:
        print(f"  {order}  not flagged  ({story[order.rsplit('-', 1)[1]]})")


def confirm(factory, tenant: str, flags: list[Flag]) -> list[str]:
    """Send the tenant's own exception for the first CONFIRMED flagged orders whose problem
    it has words for; print each one attached, with the lead time."""
    chosen = [f for f in flags if f.label in TENANT_WORDS][:CONFIRMED]
    items = [_tenant_item(factory, tenant, f) for f in chosen]
    with factory() as s:
        tenant_id = tenants.require(s, tenant).id
    results = records_in.ingest_items(factory, tenant_id, tenant, items) if items else []
    print("the tenant's own exceptions arrive (sent by the demo now, as its rules would later):")
    for flag, item, result in zip(chosen, items, results, strict=True):
        ext = item["exception"]["external_id"]
        lead = _lead_s(factory, tenant_id, ext)
        where = "attached to" if result.result == "updated" else f"{result.result}, not attached to"
        print(f"  {ext} ({item['exception']['reason_code']} on {flag.order}): {where}"
              f" {flag.raised}, which the fleet raised {duration(lead)} before it")  # fmt: skip
    return [i["exception"]["external_id"] for i in items]


def _tenant_item(factory, tenant: str, flag: Flag) -> dict:
    with factory() as s:
        order = s.scalars(select(Order).where(Order.external_id == flag.order)).one()
        events, payload = order.events, order.payload
    exception = {"external_id": "exc-" + flag.order.removeprefix("ord-"),
                 "reason_code": TENANT_WORDS[flag.label], "severity": "high"}  # fmt: skip
    order_in = {"external_id": flag.order, "payload": payload, "events": events}
    return {"tenant": tenant, "order": order_in, "exception": exception}


def _lead_s(factory, tenant_id: int, external_id: str) -> float | None:
    with factory() as s:
        rec = s.scalars(select(R).where(R.tenant_id == tenant_id, R.external_id == external_id))
        rec = rec.one_or_none()
        if rec is None or rec.attached_at is None:
            return None
        return (rec.attached_at - rec.created_at).total_seconds()


def events_by_status(factory, tenant: str, prefix: str) -> dict[str, int]:
    """The outbox events of what the orders raised (order.at_risk, then the usual ones)."""
    E = OutboxEvent
    with factory() as s:
        tenant_id = tenants.require(s, tenant).id
        stmt = _raised(tenant_id, prefix, E.status, func.count()).join(
            E, and_(E.record_id == R.id, E.tenant_id == R.tenant_id)
        )
        return dict(s.execute(stmt.group_by(E.status)).all())


def wait_delivered(factory, tenant: str, prefix: str, alive) -> dict[str, int]:
    """Wait (bounded) until none of those events is pending; their counts by status."""
    deadline = time.monotonic() + WAIT_S
    while True:
        found = events_by_status(factory, tenant, prefix)
        if not found.get("pending") or time.monotonic() > deadline or not alive():
            return found
        time.sleep(0.5)


def show(factory, tenant: str, prefix: str, procs: list[Proc]) -> bool:
    """The orders part of the demo, while the fleet `procs` run: analysed, flagged, confirmed
    by the tenant's own exceptions (attached, with the lead time), their events delivered."""

    def alive() -> bool:
        return all(p.alive() for p in procs)

    ok = wait_analysed(factory, tenant, prefix, alive)
    flags, calm = flagged(factory, tenant, prefix)
    print_flagged(flags, calm)
    confirm(factory, tenant, flags)
    events = wait_delivered(factory, tenant, prefix, alive)
    others = ", ".join(f"{k} {v}" for k, v in sorted(events.items()) if k != "delivered")
    print(f"events of the raised exceptions (order.at_risk first) delivered"
          f" {events.get('delivered', 0)}" + (f" ({others})" if others else ""))  # fmt: skip
    return ok and not events.get("pending")
