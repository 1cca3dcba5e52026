"""Decide what one chunk of valid lines writes, before anything is written.

Pure: it takes the lines and what is already stored, and returns a `Plan`. Per line:
- its exception is new: `created` (its order inserted, or merged into the stored one);
- its exception is stored on another order: `rejected` (an exception never moves);
- its exception is stored and its inputs differ (reason code, severity, notes, priority,
  true label, its order's payload or events): `updated`. A record already enriched or escalated is
  reopened for re-enrichment only when the line says `"reenrich": true`;
- otherwise `unchanged`, so replaying a feed writes nothing.

Orders merge the way a feed means them: the payload is replaced by the chunk's last line's
for that order (an earlier line's older snapshot is superseded, not a change), and events
are merged with the stored ones, deduplicated by (source, type, at), in time order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from enrichment.ingestion.lines import Good, Key, shown

CREATED, UPDATED, UNCHANGED, REJECTED = "created", "updated", "unchanged", "rejected"
NOT_REENRICHED = (
    "inputs stored; the record was already enriched, so it is not re-enriched"
    ' (send "reenrich": true to re-enrich it)'
)


@dataclass(frozen=True)
class ItemResult:
    """What became of one line or item; `pos` as in `Good`."""

    pos: int
    result: str
    external_id: str | None = None
    field: str | None = None
    reason: str | None = None
    reopened: bool = False


@dataclass
class StoredOrder:
    id: int
    payload: dict[str, Any]
    events: list[dict[str, Any]]


@dataclass
class StoredException:
    """A stored exception as a line is compared with it; `result` is its AI result (JSON-safe)
    and `finished` whether it was enriched or escalated."""

    id: int
    order_external_id: str
    inputs: dict[str, Any]  # reason_code, severity, notes, priority, reference_label
    finished: bool
    result: dict[str, Any]


@dataclass
class OrderWrite:
    """An order to insert (`id` None) or to update in place."""

    tenant_id: int
    external_id: str
    payload: dict[str, Any]
    events: list[dict[str, Any]]
    id: int | None = None


@dataclass
class RecordUpdate:
    """A stored exception whose inputs change; `field` is the first input that differs."""

    good: Good
    stored: StoredException
    field: str
    reopen: bool

    def result(self) -> ItemResult:
        kept = self.stored.finished and not self.reopen
        ext = self.good.line.exception.external_id
        reason = NOT_REENRICHED if kept else None
        return ItemResult(self.good.pos, UPDATED, ext, self.field, reason, self.reopen)


@dataclass
class Plan:
    new: list[Good] = field(default_factory=list)
    updates: list[RecordUpdate] = field(default_factory=list)
    # Lines that write nothing: unchanged or rejected.
    settled: list[ItemResult] = field(default_factory=list)
    orders: dict[Key, OrderWrite] = field(default_factory=dict)
    # Every stored order a written line attaches to: key -> id.
    order_ids: dict[Key, int] = field(default_factory=dict)

    def results(self) -> list[ItemResult]:
        """Every line's result, in input order, once the plan is written."""
        created = [ItemResult(g.pos, CREATED, g.line.exception.external_id) for g in self.new]
        done = [*created, *(u.result() for u in self.updates), *self.settled]
        return sorted(done, key=lambda r: r.pos)


def _event_key(event: Mapping[str, Any]) -> tuple[str, str, datetime | str]:
    at = event.get("at", "")
    # Parsed, so one instant written with two offsets is still one event.
    with contextlib.suppress(TypeError, ValueError):
        at = datetime.fromisoformat(at)
    return str(event.get("source")), str(event.get("type")), at


def _sort_at(event: Mapping[str, Any]) -> str:
    key = _event_key(event)[2]
    return key.isoformat() if isinstance(key, datetime) else str(key)


def merge_events(stored: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`stored` plus the events of `new` not already there, in time order (stored wins ties)."""
    merged: dict[tuple[str, str, datetime | str], dict[str, Any]] = {}
    for event in [*stored, *new]:
        merged.setdefault(_event_key(event), event)
    # Events are stored in UTC ("...Z"), so the ISO strings sort in time order.
    return sorted(merged.values(), key=_sort_at)


def _covers(events: list[dict[str, Any]], line_events: list[dict[str, Any]]) -> bool:
    have = {_event_key(e) for e in events}
    return all(_event_key(e) in have for e in line_events)


def changed_field(
    good: Good, stored: StoredException, order: StoredOrder | None, *, last: bool
) -> str | None:
    """The first input of `good` that differs from what is stored, or None.

    `last`: whether `good` is its chunk's last line for its order (only that one's payload
    is written; an earlier line's payload is superseded, so it is no change)."""
    for name, now in good.inputs().items():
        if stored.inputs[name] != now:
            return "exception.true_label" if name == "reference_label" else f"exception.{name}"
    if order is None or (last and order.payload != good.line.order.payload):
        return "order.payload"
    if not _covers(order.events, good.events):
        return "order.events"
    return None


def _moved(good: Good, stored: StoredException) -> ItemResult:
    ext, to = good.line.exception.external_id, good.line.order.external_id
    reason = (
        f"exception {ext!r} is stored on order {shown(stored.order_external_id)};"
        f" it cannot move to order {shown(to)}"
    )
    return ItemResult(good.pos, REJECTED, ext, "order.external_id", reason)


def _order_writes(plan: Plan, lines: list[Good], orders: Mapping[Key, StoredOrder]) -> None:
    """The orders as `lines` (in input order) leave them: last payload, all events merged."""
    grouped: dict[Key, list[Good]] = {}
    for good in lines:
        grouped.setdefault(good.order_key, []).append(good)
    for key, group in grouped.items():
        stored = orders.get(key)
        events = merge_events(stored.events if stored else [], [e for g in group for e in g.events])
        payload = group[-1].line.order.payload
        if stored is not None:
            plan.order_ids[key] = stored.id
            if (payload, events) == (stored.payload, stored.events):
                continue
        plan.orders[key] = OrderWrite(*key, payload, events, stored.id if stored else None)


def plan_chunk(
    lines: list[Good],
    exceptions: Mapping[Key, StoredException],
    orders: Mapping[Key, StoredOrder],
) -> Plan:
    """What `lines` (in input order) write, given the stored `exceptions` and `orders`."""
    plan, known = Plan(), []
    for good in lines:
        stored = exceptions.get(good.exception_key)
        if stored is None:
            plan.new.append(good)
        elif stored.order_external_id != good.line.order.external_id:
            plan.settled.append(_moved(good, stored))
        else:
            known.append((good, stored))
    accepted = sorted([*plan.new, *(g for g, _ in known)], key=lambda g: g.pos)
    last = {g.order_key: g.pos for g in accepted}
    for good, stored in known:
        order = orders.get(good.order_key)
        name = changed_field(good, stored, order, last=last[good.order_key] == good.pos)
        if name is None:
            ext = good.line.exception.external_id
            plan.settled.append(ItemResult(good.pos, UNCHANGED, ext))
        else:
            reopen = stored.finished and good.line.reenrich
            plan.updates.append(RecordUpdate(good, stored, name, reopen))
    # Unchanged lines change no order: their events are stored and their payload is the
    # stored one or superseded. They still count for which line's payload is last.
    _order_writes(plan, accepted, orders)
    return plan
