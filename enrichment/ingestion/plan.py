"""Decide what one batch of valid lines writes, before anything is written.

Pure: it takes the lines and what is already stored, and returns a `Plan`. A line whose
exception is new is written (its order inserted, or merged into the stored one); a line
already stored with the same content is `unchanged`; a line whose exception is stored with
different content is rejected, naming the first field that differs.

Orders merge the way a feed means them: the payload is replaced by the newest line's, and
events are merged with the stored ones, deduplicated by (source, type, at), in time order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from enrichment.ingestion.ingest import LineIn

Key = tuple[int, str]  # (tenant_id, external_id)


@dataclass(frozen=True)
class Good:
    """A line that passed validation, with its tenant resolved."""

    line_no: int
    line: LineIn
    tenant_id: int

    @property
    def order_key(self) -> Key:
        return self.tenant_id, self.line.order.external_id

    @property
    def exception_key(self) -> Key:
        return self.tenant_id, self.line.exception.external_id

    def events(self) -> list[dict[str, Any]]:
        return [e.model_dump(mode="json") for e in self.line.order.events]

    def reference_label(self) -> str | None:
        label = self.line.exception.true_label
        return str(label) if label else None


@dataclass
class StoredOrder:
    id: int
    payload: dict[str, Any]
    events: list[dict[str, Any]]


@dataclass
class OrderWrite:
    """An order to insert (`id` None) or to update in place."""

    tenant_id: int
    external_id: str
    payload: dict[str, Any]
    events: list[dict[str, Any]]
    id: int | None = None


@dataclass
class Plan:
    new: list[Good] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)
    orders: dict[Key, OrderWrite] = field(default_factory=dict)
    # Every order a new line attaches to that is already stored: key -> id.
    order_ids: dict[Key, int] = field(default_factory=dict)


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


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _differs(ext: str, name: str, stored: Any = None, line: Any = None) -> str:
    detail = f" (stored {_shown(stored)}, line {_shown(line)})" if stored or line else ""
    return f"exception {ext!r} is already stored with different content: {name}{detail}"


def exception_difference(stored: Mapping[str, Any], good: Good) -> str | None:
    """Why `good` is not the stored exception (first differing field), or None if it is."""
    exc = good.line.exception
    pairs = {
        "order.external_id": (stored["order_external_id"], good.line.order.external_id),
        "exception.reason_code": (stored["reason_code"], exc.reason_code),
        "exception.severity": (stored["severity"], exc.severity),
        "exception.notes": (stored["notes"], exc.notes),
        "exception.true_label": (stored["reference_label"], good.reference_label()),
    }
    for name, (was, now) in pairs.items():
        if was != now:
            shown = (None, None) if name == "exception.notes" else (was, now)
            return _differs(exc.external_id, name, *shown)
    return None


def _target(key: Key, lines: list[Good], stored: StoredOrder | None) -> OrderWrite:
    """The order as the batch's new lines leave it: last payload, all events merged."""
    events = list(stored.events) if stored else []
    for good in lines:
        events = merge_events(events, good.events())
    write = OrderWrite(key[0], key[1], lines[-1].line.order.payload, events)
    write.id = stored.id if stored else None
    return write


def _order_writes(plan: Plan, orders: Mapping[Key, StoredOrder]) -> None:
    grouped: dict[Key, list[Good]] = {}
    for good in plan.new:
        grouped.setdefault(good.order_key, []).append(good)
    for key, lines in grouped.items():
        stored = orders.get(key)
        write = _target(key, lines, stored)
        if stored is not None:
            plan.order_ids[key] = stored.id
            if (write.payload, write.events) == (stored.payload, stored.events):
                continue
        plan.orders[key] = write


def _order_difference(good: Good, final: OrderWrite | StoredOrder, superseded: bool) -> str | None:
    ext = good.line.exception.external_id
    if not _covers(final.events, good.events()):
        return _differs(ext, "order.events")
    # An older snapshot of the order is fine when a later line in the batch replaces it.
    if not superseded and final.payload != good.line.order.payload:
        return _differs(ext, "order.payload")
    return None


def _settle_same(plan: Plan, same: list[Good], orders: Mapping[Key, StoredOrder]) -> None:
    """Lines whose exception is stored unchanged: unchanged if their order is too."""
    last = {g.order_key: g.line_no for g in sorted([*plan.new, *same], key=lambda g: g.line_no)}
    for good in same:
        final = plan.orders.get(good.order_key) or orders[good.order_key]
        reason = _order_difference(good, final, last[good.order_key] != good.line_no)
        if reason:
            plan.rejected.append((good.line_no, reason))
        else:
            plan.unchanged.append(good.line_no)


def plan_batch(
    lines: list[Good],
    exceptions: Mapping[Key, Mapping[str, Any]],
    orders: Mapping[Key, StoredOrder],
) -> Plan:
    """What `lines` write, given the stored `exceptions` and `orders` they name."""
    plan, same = Plan(), []
    for good in lines:
        stored = exceptions.get(good.exception_key)
        if stored is None:
            plan.new.append(good)
        elif reason := exception_difference(stored, good):
            plan.rejected.append((good.line_no, reason))
        else:
            same.append(good)
    _order_writes(plan, orders)
    _settle_same(plan, same, orders)
    return plan
