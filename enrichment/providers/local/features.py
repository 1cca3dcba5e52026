"""Evidence and model features from one record: its events and their timing, the order
payload (address, payment status), the ops notes and the reason code. All pure."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from enrichment.core.provider import RecordContext
from enrichment.core.taxonomy import Label
from enrichment.providers.local.rules import (
    EVENT_LABELS,
    GENERIC_EVENTS,
    MILESTONES,
    NOTE_PATTERNS,
    PACK_SLA_H,
    PICK_SLA_H,
    REASON_HINTS,
    REQUIRED_ADDRESS,
    SCAN_GAP_H,
    UNPAID_STATUSES,
    W_ADDRESS,
    W_EVENT,
    W_EVENT_DETAIL,
    W_HEALTHY,
    W_NOTE_FIRST,
    W_NOTE_MORE,
    W_PAYMENT_STATUS,
    W_REASON,
    W_TIMING,
    ZIP_FORMATS,
)

L = Label


@dataclass(frozen=True)
class Signal:
    """One piece of evidence: which label it supports, how strongly, and what was seen."""

    label: Label
    weight: float
    kind: str
    text: str


# ---------------------------------------------------------------- evidence


def _parse_at(value: Any) -> datetime | None:
    try:
        at = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return at if at.tzinfo is not None else None


def _note_hits(label: Label, text: str) -> list[str]:
    return [m.group(0) for p in NOTE_PATTERNS[label] if (m := p.search(text))]


def note_signals(text: str | None, *, kind: str = "note") -> list[Signal]:
    """Keyword evidence from free text: first phrase per label counts most, cap of two."""
    signals = []
    for label in Label:
        hits = _note_hits(label, text or "")[:2]
        if hits:
            weight = W_NOTE_FIRST + W_NOTE_MORE * (len(hits) - 1)
            signals.append(Signal(label, weight, kind, f"{kind} mentions {', '.join(hits)!r}"))
    return signals


def event_signals(events: list[dict[str, Any]]) -> list[Signal]:
    """Telling event types (once per label), and the detail text of catch-all events."""
    signals, seen = [], set()
    for event in events:
        kind, detail = str(event.get("type", "")), str(event.get("detail", ""))
        label = EVENT_LABELS.get(kind)
        where = f"{event.get('source', '?')} event {kind}"
        if label is not None and label not in seen:
            seen.add(label)
            signals.append(Signal(label, W_EVENT, "event", f"{where}: {detail}"[:200]))
        elif kind in GENERIC_EVENTS:
            for s in note_signals(detail, kind="event detail"):
                signals.append(Signal(s.label, W_EVENT_DETAIL, s.kind, f"{where}: {detail}"[:200]))
    return signals


def _times(events: list[dict[str, Any]]) -> dict[str, datetime]:
    """First time of each event type, plus "_ref": the last event (when the record was raised)."""
    out: dict[str, datetime] = {}
    for event in events:
        at = _parse_at(event.get("at"))
        if at is not None:
            out.setdefault(str(event.get("type")), at)
            out["_ref"] = max(out.get("_ref", at), at)
    return out


def _hours(start: datetime | None, end: datetime | None) -> float:
    return (end - start).total_seconds() / 3600 if start and end else 0.0


def _stage_gap(times: dict[str, datetime], start: str, done: str) -> float:
    """Hours from `start` to `done`, or to the reference time when `done` never happened."""
    return _hours(times.get(start), times.get(done) or times.get("_ref"))


def _scan_gap(events: list[dict[str, Any]], ref: datetime | None) -> float:
    """The longest silence between carrier scans (to the reference time if undelivered)."""
    scans = [_parse_at(e.get("at")) for e in events if e.get("source") == "carrier"]
    scans = sorted(at for at in scans if at is not None)
    if not scans or any(e.get("type") == "delivered" for e in events):
        return max((_hours(a, b) for a, b in zip(scans, scans[1:], strict=False)), default=0.0)
    return max(_hours(a, b) for a, b in zip(scans, [*scans[1:], ref], strict=True))


def timing_signals(events: list[dict[str, Any]]) -> list[Signal]:
    """Late picks, late packs and silent tracking, from the event timestamps."""
    times, signals = _times(events), []
    pick_h = _stage_gap(times, "released_to_pick", "picked")
    if pick_h > PICK_SLA_H:
        signals.append(Signal(L.PICK_DELAY, W_TIMING, "timing", f"not picked for {pick_h:.0f}h"))
    pack_h = _stage_gap(times, "picked", "packed")
    if pack_h > PACK_SLA_H:
        signals.append(Signal(L.PACK_DELAY, W_TIMING, "timing", f"not packed for {pack_h:.0f}h"))
    scan_h = _scan_gap(events, times.get("_ref"))
    if scan_h > SCAN_GAP_H:
        text = f"no carrier scan for {scan_h:.0f}h"
        signals.append(Signal(L.MISSING_SCAN, W_TIMING, "timing", text))
    return signals


def address_problems(address: Any) -> list[str]:
    """What is wrong with a shipping address: missing fields, a zip of the wrong shape.

    No address object at all says nothing (digital goods, a payload trimmed by the source).
    """
    if not isinstance(address, dict):
        return []
    problems = [f"address {f} missing" for f in REQUIRED_ADDRESS if not address.get(f)]
    fmt = ZIP_FORMATS.get(str(address.get("country_code", "")).upper())
    zip_code = str(address.get("zip") or "")
    if zip_code and fmt is not None and not fmt.match(zip_code.strip()):
        problems.append(f"zip {zip_code!r} is not a valid {address['country_code']} postal code")
    return problems


def payload_signals(order: dict[str, Any]) -> list[Signal]:
    signals = [
        Signal(L.ADDRESS_INVALID, W_ADDRESS, "payload", p)
        for p in address_problems(order.get("shipping_address"))
    ][:1]
    status = order.get("financial_status")
    if status in UNPAID_STATUSES:
        text = f"payment status is {status}"
        signals.append(Signal(L.PAYMENT_FAILED, W_PAYMENT_STATUS, "payload", text))
    return signals


def reason_signals(reason_code: str) -> list[Signal]:
    code = re.sub(r"[^A-Z0-9]+", "_", reason_code.upper()).strip("_")
    labels = REASON_HINTS.get(code, ())
    text = f"reason code {reason_code}"
    return [Signal(label, W_REASON / len(labels), "reason", text) for label in labels]


def _healthy(signals: list[Signal], events: list[dict[str, Any]]) -> list[Signal]:
    """A normal flow with no observed problem is evidence for OTHER (a customer request)."""
    observed = [s for s in signals if s.kind not in ("reason", "note")]
    if observed or not events:
        return []
    unusual = [e for e in events if e.get("type") not in MILESTONES]
    if unusual:
        return []
    return [Signal(L.OTHER, W_HEALTHY, "flow", "order flow shows no operational problem")]


def collect(ctx: RecordContext) -> list[Signal]:
    """All evidence in the record, strongest first (stable order for equal weights)."""
    events = [e for e in ctx.events if isinstance(e, dict)]
    signals = [
        *event_signals(events),
        *timing_signals(events),
        *payload_signals(ctx.order if isinstance(ctx.order, dict) else {}),
        *note_signals(ctx.notes),
        *reason_signals(ctx.reason_code),
    ]
    signals += _healthy(signals, events)
    return sorted(signals, key=lambda s: -s.weight)


# ---------------------------------------------------------------- scoring


def score(signals: Iterable[Signal]) -> dict[Label, float]:
    totals = dict.fromkeys(Label, 0.0)
    for s in signals:
        totals[s.label] += s.weight
    return totals


def rank(totals: dict[Label, float]) -> list[tuple[Label, float]]:
    """Labels by score, ties broken by taxonomy order so the result is stable."""
    order = {label: i for i, label in enumerate(Label)}
    return sorted(totals.items(), key=lambda kv: (-kv[1], order[kv[0]]))


# ---------------------------------------------------------------- model features

# The rules are in conflict when the runner-up has at least this share of the best total.
CONFLICT_RATIO = 0.5
WORD = re.compile(r"[^\W\d_]{2,}")  # letters only: ids, sizes and hours say nothing
# Rule totals are divided by this so an event + note + reason (~6) reads ~1.
RULE_SCALE = 6.0


def calibration_group(signals: list[Signal]) -> str:
    """ "conflict" when the rules' evidence points two ways, else "clear". The model's
    probability alone hides such conflicts (it learns to trust the notes), so each group
    has its own calibration."""
    (_, best), (_, second) = rank(score(signals))[:2]
    return "conflict" if best > 0 and second >= CONFLICT_RATIO * best else "clear"


def text_features(text: str, prefix: str) -> dict[str, float]:
    """Words, word pairs and letter trigrams of `text` (trigrams survive typos)."""
    words = WORD.findall(text.lower())
    feats = {f"{prefix}w:{w}": 1.0 for w in words}
    feats.update({f"{prefix}b:{a}_{b}": 1.0 for a, b in zip(words, words[1:], strict=False)})
    for w in words:
        padded = f"<{w}>"
        feats.update({f"{prefix}c:{padded[i : i + 3]}": 1.0 for i in range(len(padded) - 2)})
    return feats


def record_features(ctx: RecordContext, signals: list[Signal]) -> dict[str, float]:
    """Sparse features of one record: rule evidence and totals, events, reason, note text."""
    feats: dict[str, float] = {f"s:{s.kind}:{s.label}": 1.0 for s in signals}
    for label, total in score(signals).items():
        if total:
            feats[f"rule:{label}"] = total / RULE_SCALE
    best, best_score = rank(score(signals))[0]
    feats["rule_top:" + (str(best) if best_score > 0 else "none")] = 1.0
    for event in ctx.events:
        kind = str(event.get("type", "")) if isinstance(event, dict) else ""
        if kind and kind not in MILESTONES:
            feats[f"e:{kind}"] = 1.0
    feats[f"r:{re.sub(r'[^A-Z0-9]+', '_', ctx.reason_code.upper()).strip('_')}"] = 1.0
    feats.update(text_features(ctx.notes or "", "n"))
    return feats
