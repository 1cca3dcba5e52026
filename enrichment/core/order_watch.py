"""When to look at a watched order again: its waits, their deadlines, closed or not. Pure.

An order's timestamps imply promises: once paid it should be allocated, once released to
the warehouse picked, once picked packed, once packed handed to a carrier, once collected
delivered. Each promise is a `Wait` with a limit in hours (the same SLAs the local provider
reads as late: providers/local/rules.py). The timers only decide *when* the order analysis
looks (`next_check_at`); whether there is a problem is the analysis' answer. A delivered or
cancelled order is closed: nothing is checked again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from enrichment.core.schemas import OrderAnalysis, OrderProblem
from enrichment.core.taxonomy import Label

# A check lands this long after a deadline, so the wait is strictly over it when read.
GRACE_S = 1.0
# An open order with no deadline ahead (a wait already overdue, or no milestone yet) is
# looked at again after this long, until it closes.
IDLE_RECHECK_S = 86_400.0

CLOSED = frozenset({"delivered", "cancelled", "canceled", "order_cancelled", "order_canceled"})
_SCANS = frozenset({"picked_up", "in_transit", "out_for_delivery", "delivered", "arrived_at_hub",
                    "departed_hub", "delivery_attempted", "held_at_facility"})  # fmt: skip
_AFTER_PICK = frozenset({"picked", "packed", "label_created", "short_pick", *_SCANS})


@dataclass(frozen=True)
class Wait:
    """A promise: from the first `start` event, one of `done` within `limit_h` hours."""

    name: str
    start: frozenset[str]
    done: frozenset[str]
    limit_h: float
    label: Label


WAITS = (
    Wait("allocate", frozenset({"payment_captured", "payment_authorized"}),
         frozenset({"allocated", "released_to_pick", *_AFTER_PICK}), 12.0,
         Label.INVENTORY_SHORTAGE),
    Wait("pick", frozenset({"released_to_pick"}), _AFTER_PICK, 24.0, Label.PICK_DELAY),
    Wait("pack", frozenset({"picked"}), frozenset({"packed", "label_created", *_SCANS}), 12.0,
         Label.PACK_DELAY),
    Wait("hand_over", frozenset({"packed"}), _SCANS, 36.0, Label.MISSING_SCAN),
    Wait("delivery", _SCANS - {"delivered"}, frozenset({"delivered"}), 96.0,
         Label.DELIVERY_DELAY),
)  # fmt: skip


@dataclass(frozen=True)
class Deadline:
    """An open wait: by when its promise is due, and what breaking it would be."""

    wait: str
    label: Label
    due_at: datetime


def event_type(raw: Any) -> str:
    """An event type in snake case ("Released To Pick" -> "released_to_pick")."""
    return re.sub(r"[^a-z0-9]+", "_", str(raw).lower()).strip("_")


def _times(events: Iterable[Mapping[str, Any]]) -> list[tuple[str, datetime]]:
    out = []
    for event in events:
        try:
            at = datetime.fromisoformat(str(event.get("at")))
        except ValueError:
            continue
        if at.tzinfo is not None:
            out.append((event_type(event.get("type", "")), at))
    return out


def is_closed(events: Iterable[Mapping[str, Any]]) -> bool:
    """Delivered or cancelled: no longer watched."""
    return any(kind in CLOSED for kind, _ in _times(events))


def deadlines(events: Iterable[Mapping[str, Any]]) -> list[Deadline]:
    """The waits begun and not done, each with its due time (from the first start event)."""
    times = _times(events)
    out = []
    for wait in WAITS:
        began = [at for kind, at in times if kind in wait.start]
        if began and not any(kind in wait.done for kind, _ in times):
            out.append(Deadline(wait.name, wait.label, min(began) + timedelta(hours=wait.limit_h)))
    return out


def overdue(events: Iterable[Mapping[str, Any]], now: datetime) -> list[tuple[Deadline, float]]:
    """The open waits past their deadline at `now`, with the hours waited so far."""
    found = []
    for deadline in deadlines(events):
        if deadline.due_at < now:
            wait = next(w for w in WAITS if w.name == deadline.wait)
            waited_h = wait.limit_h + (now - deadline.due_at).total_seconds() / 3600
            found.append((deadline, waited_h))
    return found


def next_check_at(events: Iterable[Mapping[str, Any]], now: datetime) -> datetime | None:
    """When the analysis looks again: just after the nearest deadline still ahead, else after
    IDLE_RECHECK_S; None for a closed order."""
    events = list(events)
    if is_closed(events):
        return None
    ahead = [d.due_at for d in deadlines(events) if d.due_at > now]
    if not ahead:
        return now + timedelta(seconds=IDLE_RECHECK_S)
    return min(ahead) + timedelta(seconds=GRACE_S)


@dataclass(frozen=True)
class Decision:
    """What one finished analysis means for the watch: the problems to raise (confident
    enough), and when to look again (None: closed, no longer watched)."""

    raises: list[OrderProblem]
    next_check_at: datetime | None


def decide(
    analysis: OrderAnalysis, events: list[Mapping[str, Any]], *, threshold: float, now: datetime
) -> Decision:
    """The problems at or above the tenant's threshold, and the watch's next check."""
    raises = [p for p in analysis.problems if p.confidence >= threshold]
    return Decision(raises, next_check_at(events, now))
