"""Evidence from the structure of a record, whatever words anyone wrote: what the events are,
when they happened (SLA breaches, waits between stages, silent tracking), carrier exception
codes, delivery attempts, payment and allocation results, and the shipping address. All pure.

Every function returns `Signal`s (which label, how strongly, what was seen) and model
features named by family: `ev:` events and codes, `tm:` timing, `pl:` payload.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from enrichment.core.order_events import detail_text, source_words
from enrichment.core.taxonomy import Label
from enrichment.providers.local import rules as R
from enrichment.providers.local.text import fold, keyword_weights

L = Label


@dataclass(frozen=True)
class Signal:
    """One piece of evidence: which label it supports, how strongly, and what was seen."""

    label: Label
    weight: float
    kind: str
    text: str


@dataclass(frozen=True)
class Event:
    source: str
    type: str
    at: datetime | None
    detail: str


def _parse_at(value: Any) -> datetime | None:
    try:
        at = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return at if at.tzinfo is not None else None


def event_type(raw: Any) -> str:
    """An event type as ours: snake case, other systems' names mapped (rules.EVENT_ALIASES)."""
    kind = re.sub(r"[^a-z0-9]+", "_", str(raw).lower()).strip("_")
    return R.EVENT_ALIASES.get(kind, kind)


def read_events(raw: list[Any]) -> list[Event]:
    """The events that are objects, as typed values (type normalized, time parsed, an object
    detail read as `key: value` text)."""
    return [
        Event(str(e.get("source", "")), event_type(e.get("type", "")),
              _parse_at(e.get("at")), detail_text(e.get("detail")))
        for e in raw if isinstance(e, dict)
    ]  # fmt: skip


# ---------------------------------------------------------------- events and codes


def _stem_label(kind: str) -> Label | None:
    words = [w for w in re.split(r"[^a-z0-9]+", kind) if w]
    for stems, label in R.EVENT_STEMS:
        if all(any(w.startswith(s) and (len(s) > 3 or w == s) for w in words) for s in stems):
            return label
    return None


def _detail_signals(event: Event, where: str) -> list[Signal]:
    out = [
        Signal(label, R.W_CODE, "code", f"{where}: code {m.group(0)} ({event.detail})"[:200])
        for pattern, label in R.CARRIER_CODES
        if (m := pattern.search(event.detail))
    ]
    for label, (weight, seen) in keyword_weights(fold(event.detail)).items():
        text = f"{where}: {event.detail} ({seen})"[:200]
        out.append(Signal(label, R.W_EVENT_DETAIL * weight / 1.5, "event detail", text))
    return out


def _source_signals(event: Event, where: str) -> list[Signal]:
    """An unfamiliar source's words ("fraud_screening", "returns_desk"), read as a detail's."""
    words = source_words(event.source)
    return [
        Signal(label, R.W_EVENT_DETAIL * weight / 1.5, "event detail", f"{where} ({seen})"[:200])
        for label, (weight, seen) in keyword_weights(fold(words)).items()
    ]


def event_signals(events: list[Event]) -> list[Signal]:
    """Telling event types (once per label); for catch-all and unknown types, the words of
    the type, carrier codes and phrases in the detail; the words of unfamiliar sources."""
    signals, seen = [], set()
    for event in events:
        where = f"{event.source or '?'} event {event.type}"
        signals += _source_signals(event, where)
        label = R.EVENT_LABELS.get(event.type)
        if label is None and event.type not in R.MILESTONES | R.GENERIC_EVENTS:
            label = _stem_label(event.type)
        if label is not None and label not in seen:
            seen.add(label)
            signals.append(Signal(label, R.W_EVENT, "event", f"{where}: {event.detail}"[:200]))
        if event.type not in R.MILESTONES and event.type not in R.EVENT_LABELS:
            signals += _detail_signals(event, where)
    return signals


def event_features(events: list[Event]) -> dict[str, float]:
    feats: dict[str, float] = {}
    for event in events:
        if event.type not in R.MILESTONES:
            feats[f"ev:{event.type}"] = 1.0
            if (label := _stem_label(event.type)) is not None:
                feats[f"ev:stem:{label}"] = 1.0
    attempts = sum(e.type in ("delivery_attempted", "delivery_attempt_failed") for e in events)
    if attempts:
        feats["ev:attempts"] = min(attempts, 3) / 3
    if any(e.type in R.ADDRESS_OK_EVENTS for e in events):
        feats["ev:address_ok"] = 1.0
    return feats


# ---------------------------------------------------------------- timing


@dataclass(frozen=True)
class Timing:
    """Hours spent in each stage (0 when it does not apply) and how far the order got."""

    pick_h: float
    pack_h: float
    collect_h: float
    scan_gap_h: float
    transit_h: float
    unallocated_h: float
    reached: str


def _hours(start: datetime | None, end: datetime | None) -> float:
    return max(0.0, (end - start).total_seconds() / 3600) if start and end else 0.0


def _first(events: list[Event], types: frozenset[str] | set[str]) -> datetime | None:
    times = [e.at for e in events if e.type in types and e.at is not None]
    return min(times) if times else None


def _wait(events: list[Event], start: str, done: set[str], ref: datetime | None) -> float:
    """Hours from the first `start` to the first of `done`, or to `ref` if none came."""
    began = _first(events, {start})
    return _hours(began, _first(events, done) or ref) if began else 0.0


def _scan_gap(events: list[Event], ref: datetime | None, delivered: bool) -> float:
    """The longest silence between carrier events (to `ref` when undelivered)."""
    scans = sorted(e.at for e in events if e.source == "carrier" and e.at is not None)
    ends = scans[1:] if delivered or ref is None else [*scans[1:], ref]
    return max((_hours(a, b) for a, b in zip(scans, ends, strict=False)), default=0.0)


def timing(events: list[Event], as_of: datetime | None = None) -> Timing:
    """The waits up to the latest event, or up to `as_of` when that is later: an exception
    is read as of its last event (its `exception_opened` says when it was raised), a watched
    order as of the moment it is looked at (nothing happening is then the news)."""
    times = [e.at for e in events if e.at is not None]
    if as_of is not None:
        times.append(as_of)
    ref = max(times) if times else None
    delivered = any(e.type == "delivered" for e in events)
    after_pick = {"picked", "packed", *R.SCANS, "label_created", "short_pick"}
    collected = _first(events, R.SCANS)
    started = _first(events, {"payment_captured", "payment_authorized"})
    progressed = _first(events, {"allocated", "released_to_pick", *after_pick})
    reached = max((R.FLOW.index(e.type) for e in events if e.type in R.FLOW), default=-1)
    return Timing(
        pick_h=_wait(events, "released_to_pick", after_pick, ref),
        pack_h=_wait(events, "picked", {"packed", *R.SCANS, "label_created"}, ref),
        collect_h=_wait(events, "packed", set(R.SCANS), ref),
        scan_gap_h=_scan_gap(events, ref, delivered),
        transit_h=0.0 if delivered or collected is None else _hours(collected, ref),
        unallocated_h=_hours(started, ref) if started and not progressed else 0.0,
        reached=R.FLOW[reached] if reached >= 0 else "none",
    )


def _late(hours: float, sla_h: float) -> bool:
    return hours > sla_h


def timing_signals(t: Timing) -> list[Signal]:
    """Late picks, packs and collections, silent tracking, slow transit, no allocation."""
    checks = (
        (t.pick_h, R.PICK_SLA_H, L.PICK_DELAY, "not picked for {:.0f}h after release"),
        (t.pack_h, R.PACK_SLA_H, L.PACK_DELAY, "not packed for {:.0f}h after the pick"),
        (t.collect_h, R.COLLECT_SLA_H, L.MISSING_SCAN, "no carrier scan {:.0f}h after packing"),
        (t.scan_gap_h, R.SCAN_GAP_H, L.MISSING_SCAN, "no carrier scan for {:.0f}h"),
        (t.unallocated_h, R.ALLOCATE_SLA_H, L.INVENTORY_SHORTAGE, "not allocated after {:.0f}h"),
    )
    out = [
        Signal(label, R.W_TIMING, "timing", text.format(hours))
        for hours, sla_h, label, text in checks
        if _late(hours, sla_h)
    ]
    if _late(t.transit_h, R.TRANSIT_SLA_H) and not _late(t.scan_gap_h, R.SCAN_GAP_H):
        text = f"in transit for {t.transit_h:.0f}h, scans still coming"
        out.append(Signal(L.DELIVERY_DELAY, R.W_TIMING, "timing", text))
    return out


def timing_features(t: Timing) -> dict[str, float]:
    """Each wait scaled by its SLA (capped at 3), a flag past the SLA, and the stage reached."""
    feats = {f"tm:reached:{t.reached}": 1.0}
    for name, hours, sla_h in (
        ("pick", t.pick_h, R.PICK_SLA_H),
        ("pack", t.pack_h, R.PACK_SLA_H),
        ("collect", t.collect_h, R.COLLECT_SLA_H),
        ("scan_gap", t.scan_gap_h, R.SCAN_GAP_H),
        ("transit", t.transit_h, R.TRANSIT_SLA_H),
        ("unallocated", t.unallocated_h, R.ALLOCATE_SLA_H),
    ):
        if hours > 0:
            feats[f"tm:{name}"] = min(hours / sla_h, 3.0)
            if _late(hours, sla_h):
                feats[f"tm:{name}_late"] = 1.0
    return feats


# ---------------------------------------------------------------- payload


def _blank(value: Any) -> bool:
    return not str(value or "").strip() or fold(str(value)).strip() in R.PLACEHOLDERS


def _address_checks(address: Any) -> list[tuple[str, str]]:
    """(key, text) per problem of a shipping address; see `address_problems`."""
    if not isinstance(address, dict):
        return []
    found = [(f"{f}_missing", f"address {f} missing")
             for f in R.REQUIRED_ADDRESS if _blank(address.get(f))]  # fmt: skip
    country = str(address.get("country_code") or "").upper()
    fmt = R.ZIP_FORMATS.get(country)
    zip_code = str(address.get("zip") or "").strip()
    if not _blank(zip_code) and fmt is not None and not fmt.match(zip_code):
        found.append(("zip_shape", f"zip {zip_code!r} is not a valid {country} postal code"))
    line1 = str(address.get("address1") or "")
    lines = f"{line1} {address.get('address2') or ''}"
    if not _blank(line1) and not re.search(r"\d", lines):
        found.append(("no_number", "address has no house number"))
    if "@" in lines:
        found.append(("email_in_line", "an email address in the address lines"))
    return found


def address_problems(address: Any) -> list[str]:
    """What is wrong with a shipping address: missing or placeholder fields, a postal code
    of the wrong shape for its country, no house number, an email typed into a line.

    No address object at all says nothing (digital goods, a payload trimmed by the source).
    """
    return [text for _, text in _address_checks(address)]


def payload_signals(order: dict[str, Any]) -> list[Signal]:
    problems = address_problems(order.get("shipping_address"))
    signals = [Signal(L.ADDRESS_INVALID, R.W_ADDRESS, "payload", p) for p in problems][:1]
    status = order.get("financial_status")
    if status in R.UNPAID_STATUSES:
        text = f"payment status is {status}"
        signals.append(Signal(L.PAYMENT_FAILED, R.W_PAYMENT_STATUS, "payload", text))
    return signals


def payload_features(order: dict[str, Any], events: list[Event]) -> dict[str, float]:
    feats = {f"pl:addr:{key}": 1.0 for key, _ in _address_checks(order.get("shipping_address"))}
    feats[f"pl:fin:{order.get('financial_status') or 'none'}"] = 1.0
    paid = any(e.type in ("payment_captured", "payment_authorized") for e in events)
    feats["pl:paid_event" if paid else "pl:no_paid_event"] = 1.0
    return feats
