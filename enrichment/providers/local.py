"""The local provider: deterministic rules over the record's own fields, no network, no key.

analyze collects weighted evidence (event types, event timing, payment status, address
completeness, keywords in the ops notes, the reason code), classify scores every label from
it, and resolve picks allow-listed actions for the classified label. The same input always
gives the same output; nothing here is random, and `reference_label` is never seen.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from enrichment.errors import PermanentError, TransientError
from enrichment.providers.base import RecordContext, StageCall
from enrichment.schemas import Analysis, Classification, Resolution
from enrichment.taxonomy import ALLOWED_ACTIONS, Action, Label

L = Label
MODEL = "rules-v1"

# Evidence weights. Events are what systems observed; notes are what people wrote;
# the reason code is the weakest: source systems reuse a few codes for many problems.
W_EVENT = 3.0
W_EVENT_DETAIL = 2.0
W_TIMING = 2.5
W_ADDRESS = 2.5
W_PAYMENT_STATUS = 1.5
W_NOTE_FIRST, W_NOTE_MORE = 1.5, 0.75
W_REASON = 1.0
W_HEALTHY = 2.0
W_ANALYSIS = 0.5

EVENT_LABELS: dict[str, Label] = {
    "address_validation_failed": L.ADDRESS_INVALID,
    "address_correction_required": L.ADDRESS_INVALID,
    "undeliverable_address": L.ADDRESS_INVALID,
    "payment_declined": L.PAYMENT_FAILED,
    "authorization_failed": L.PAYMENT_FAILED,
    "capture_failed": L.PAYMENT_FAILED,
    "chargeback": L.PAYMENT_FAILED,
    "allocation_failed": L.INVENTORY_SHORTAGE,
    "short_pick": L.INVENTORY_SHORTAGE,
    "stockout": L.INVENTORY_SHORTAGE,
    "package_damaged": L.DAMAGED_PACKAGE,
    "damaged_in_transit": L.DAMAGED_PACKAGE,
    "damaged_in_warehouse": L.DAMAGED_PACKAGE,
    "delivery_attempted": L.CUSTOMER_UNAVAILABLE,
    "delivery_attempt_failed": L.CUSTOMER_UNAVAILABLE,
    "held_at_facility": L.CUSTOMER_UNAVAILABLE,
    "delayed": L.DELIVERY_DELAY,
    "delivery_delayed": L.DELIVERY_DELAY,
    "missed_connection": L.DELIVERY_DELAY,
    "pick_sla_breached": L.PICK_DELAY,
    "pack_sla_breached": L.PACK_DELAY,
    "tracking_stalled": L.MISSING_SCAN,
    "no_scan": L.MISSING_SCAN,
    "integration_error": L.SYSTEM_ERROR,
    "webhook_failed": L.SYSTEM_ERROR,
    "label_generation_failed": L.SYSTEM_ERROR,
    "edi_rejected": L.SYSTEM_ERROR,
    "sync_failed": L.SYSTEM_ERROR,
}
# Catch-all event types whose meaning is only in the free-text detail.
GENERIC_EVENTS = frozenset({"exception", "label_failed", "order_on_hold", "alert", "status_update"})
# Milestones: their presence alone is not a problem.
MILESTONES = frozenset(
    {
        "order_created", "payment_authorized", "payment_captured", "allocated",
        "released_to_pick", "picked", "packed", "label_created", "picked_up",
        "in_transit", "out_for_delivery", "delivered", "exception_opened",
    }
)  # fmt: skip

# Phrases per label, matched on word boundaries, case-insensitive (regex fragments).
NOTE_KEYWORDS: dict[Label, tuple[str, ...]] = {
    L.ADDRESS_INVALID: (
        r"addr(?:ess)?", r"zip", r"post ?code", r"postal code", r"no such street",
        r"apartment", r"apt", r"undeliverable", r"address verification",
    ),
    L.PAYMENT_FAILED: (
        r"payment", r"card", r"declined", r"auth(?:orization)?", r"capture[d]?",
        r"gateway", r"insufficient funds", r"do_not_honor", r"chargeback",
    ),
    L.INVENTORY_SHORTAGE: (
        r"short pick", r"out of stock", r"oos", r"stock", r"inventory", r"bin empty",
        r"backorder", r"cycle count", r"on hand",
    ),
    L.DAMAGED_PACKAGE: (
        r"damaged?", r"crushed", r"broken", r"cracked", r"contents exposed", r"dented",
    ),
    L.CUSTOMER_UNAVAILABLE: (
        r"no one home", r"not home", r"nobody", r"no one to sign", r"not available",
        r"recipient", r"business closed", r"notice left", r"delivery attempted",
        r"(?:2nd|second|failed) attempt", r"held at (?:depot|facility)",
    ),
    L.DELIVERY_DELAY: (
        r"delay(?:ed)?", r"stuck in transit", r"weather", r"missed connection",
        r"late delivery", r"running late", r"eta", r"promised date", r"peak volume",
    ),
    L.PICK_DELAY: (
        r"not picked", r"pick(?:ing)? (?:late|sla|queue)", r"to be picked", r"wave",
        r"picker", r"replen",
    ),
    L.PACK_DELAY: (
        r"not packed", r"pack(?:ing)? (?:station|bench|sla|out)", r"to be packed",
        r"packing (?:delayed|backlog)", r"tote", r"mailer",
    ),
    L.MISSING_SCAN: (
        r"no (?:tracking )?(?:scan|updates?|movement)", r"tracking stalled",
        r"never scanned", r"missing scan", r"last scan", r"not seen", r"trace",
    ),
    L.SYSTEM_ERROR: (
        r"integration", r"sync", r"api", r"webhook", r"http 5\d\d", r"500", r"edi",
        r"system error", r"erp", r"timeout",
    ),
    L.OTHER: (
        r"gift", r"invoice", r"customs", r"loyalty", r"change the", r"copy of",
    ),
}  # fmt: skip
NOTE_PATTERNS: dict[Label, tuple[re.Pattern[str], ...]] = {
    label: tuple(re.compile(rf"\b{p}\b", re.IGNORECASE) for p in phrases)
    for label, phrases in NOTE_KEYWORDS.items()
}

# Reason codes as source systems send them, normalized to UPPER_SNAKE. A shared code
# (SLA_BREACH, CARRIER_EXC) splits its weak weight between the labels it may mean.
REASON_HINTS: dict[str, tuple[Label, ...]] = {
    "ADDR_CHECK": (L.ADDRESS_INVALID,),
    "ADDRESS": (L.ADDRESS_INVALID,),
    "ADDR_INVALID": (L.ADDRESS_INVALID,),
    "PAYMENT": (L.PAYMENT_FAILED,),
    "PAY_HOLD": (L.PAYMENT_FAILED,),
    "PAY_DECLINE": (L.PAYMENT_FAILED,),
    "SHORT_PICK": (L.INVENTORY_SHORTAGE,),
    "OOS": (L.INVENTORY_SHORTAGE,),
    "INV_SHORT": (L.INVENTORY_SHORTAGE,),
    "STOCKOUT": (L.INVENTORY_SHORTAGE,),
    "DAMAGE": (L.DAMAGED_PACKAGE,),
    "DMG": (L.DAMAGED_PACKAGE,),
    "NDR": (L.CUSTOMER_UNAVAILABLE,),
    "DELIVERY_ATTEMPT": (L.CUSTOMER_UNAVAILABLE,),
    "LATE_DELIVERY": (L.DELIVERY_DELAY,),
    "LATE_PICK": (L.PICK_DELAY,),
    "LATE_PACK": (L.PACK_DELAY,),
    "NO_SCAN": (L.MISSING_SCAN,),
    "TRACKING": (L.MISSING_SCAN,),
    "SYS_ERR": (L.SYSTEM_ERROR,),
    "INTEGRATION": (L.SYSTEM_ERROR,),
    "CS_REQUEST": (L.OTHER,),
    "MISC": (L.OTHER,),
    "SLA_BREACH": (L.DELIVERY_DELAY, L.PICK_DELAY, L.PACK_DELAY, L.MISSING_SCAN),
    "CARRIER_EXC": (L.DAMAGED_PACKAGE, L.CUSTOMER_UNAVAILABLE, L.DELIVERY_DELAY, L.MISSING_SCAN),
}

# Postal code shapes per country; a code that does not fit will not get a label printed.
ZIP_FORMATS: dict[str, re.Pattern[str]] = {
    "US": re.compile(r"^\d{5}(?:-\d{4})?$"),
    "CA": re.compile(r"^[A-Z]\d[A-Z] ?\d[A-Z]\d$", re.IGNORECASE),
    "GB": re.compile(r"^[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}$", re.IGNORECASE),
    "DE": re.compile(r"^\d{5}$"),
    "FR": re.compile(r"^\d{5}$"),
    "AU": re.compile(r"^\d{4}$"),
}
REQUIRED_ADDRESS = ("address1", "city", "zip", "country_code")
UNPAID_STATUSES = frozenset({"pending", "voided"})
# Orders whose money went back: shipping anything automatically would be wrong.
NO_AUTOMATION_STATUSES = frozenset({"refunded", "voided"})

# Hours after which a stage counts as late (the SLAs the demo tenant works to).
PICK_SLA_H = 24.0
PACK_SLA_H = 12.0
SCAN_GAP_H = 72.0

# Confidence: evidence strength saturates with total support; dominance is the margin
# over the runner-up. Scale chosen so event + note + reason (~6) reads ~0.9.
STRENGTH_SCALE = 2.2
NO_EVIDENCE_CONFIDENCE = 0.1
ACTION_ORDER = {a: i for i, a in enumerate(Action)}


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


def analysis_signals(analysis: Analysis | None) -> list[Signal]:
    """A small nudge for labels that the previous stage's own words also point to."""
    if analysis is None:
        return []
    text = " ".join([*analysis.problems, analysis.summary])
    return [
        Signal(s.label, W_ANALYSIS, s.kind, s.text) for s in note_signals(text, kind="analysis")
    ]


def score(signals: Iterable[Signal]) -> dict[Label, float]:
    totals = dict.fromkeys(Label, 0.0)
    for s in signals:
        totals[s.label] += s.weight
    return totals


def confidence(best: float, runner_up: float) -> float:
    """In [0, 1): high only with much support for the best label and a clear margin."""
    if best <= 0:
        return NO_EVIDENCE_CONFIDENCE
    strength = 1 - math.exp(-best / STRENGTH_SCALE)
    dominance = (best - runner_up) / best
    return round(strength * (0.5 + 0.5 * dominance), 3)


def rank(totals: dict[Label, float]) -> list[tuple[Label, float]]:
    """Labels by score, ties broken by taxonomy order so the result is stable."""
    order = {label: i for i, label in enumerate(Label)}
    return sorted(totals.items(), key=lambda kv: (-kv[1], order[kv[0]]))


# ---------------------------------------------------------------- resolution


def _has_event(ctx: RecordContext, *types: str) -> bool:
    return any(e.get("type") in types for e in ctx.events if isinstance(e, dict))


def _carrier_involved(ctx: RecordContext) -> bool:
    return any(e.get("source") == "carrier" for e in ctx.events if isinstance(e, dict))


def _address_actions(ctx: RecordContext) -> set[Action]:
    # A missing field cannot be validated into existence: only the customer knows it.
    missing = any("missing" in p for p in address_problems(ctx.order.get("shipping_address")))
    extra = {Action.REQUEST_ADDRESS_CONFIRMATION} if missing else set()
    return {Action.VALIDATE_ADDRESS, *extra}


def _payment_actions(ctx: RecordContext) -> set[Action]:
    held = _has_event(ctx, "order_on_hold") or _carrier_involved(ctx)
    hold = set() if held else {Action.HOLD_SHIPMENT}
    return {Action.RETRY_PAYMENT, Action.NOTIFY_CUSTOMER, *hold}


def _inventory_actions(ctx: RecordContext) -> set[Action]:
    several = len(ctx.order.get("line_items") or []) > 1
    split = {Action.SPLIT_SHIPMENT} if several else set()
    return {Action.REALLOCATE_STOCK, Action.NOTIFY_CUSTOMER, *split}


def _damage_actions(ctx: RecordContext) -> set[Action]:
    if not _carrier_involved(ctx):  # broken in our warehouse: replace it, no claim to file
        return {Action.RESHIP_ORDER}
    return {Action.OPEN_CARRIER_CLAIM, Action.RESHIP_ORDER, Action.NOTIFY_CUSTOMER}


ACTION_RULES = {
    L.ADDRESS_INVALID: _address_actions,
    L.PAYMENT_FAILED: _payment_actions,
    L.INVENTORY_SHORTAGE: _inventory_actions,
    L.DAMAGED_PACKAGE: _damage_actions,
    L.CUSTOMER_UNAVAILABLE: lambda ctx: {Action.RESCHEDULE_DELIVERY, Action.NOTIFY_CUSTOMER},
    L.DELIVERY_DELAY: lambda ctx: {Action.OPEN_CARRIER_TRACE, Action.NOTIFY_CUSTOMER},
    L.PICK_DELAY: lambda ctx: {Action.PRIORITIZE_PICK},
    L.PACK_DELAY: lambda ctx: {Action.PRIORITIZE_PACK},
    L.MISSING_SCAN: lambda ctx: {Action.OPEN_CARRIER_TRACE},
}


def plan(ctx: RecordContext, label: Label) -> tuple[list[Action], str]:
    """Allow-listed actions for `label` given the record, and why."""
    status = ctx.order.get("financial_status")
    if label is not L.PAYMENT_FAILED and status in NO_AUTOMATION_STATUSES:
        return [], f"order is {status}: a person must decide"
    rule = ACTION_RULES.get(label)
    if rule is None:
        return [], f"{label} needs a person: no automated action exists"
    actions = rule(ctx) & ALLOWED_ACTIONS[label]
    return sorted(actions, key=ACTION_ORDER.__getitem__), f"rules for {label}"


# ---------------------------------------------------------------- provider


def _fraction(*parts: object) -> float:
    """A stable number in [0, 1) from the parts (blake2b, not hash(): that is salted)."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class LocalProvider:
    """Rules-based provider. `fault_rate` in [0, 1] (default 0): share of calls that fail
    with TransientError on purpose, chosen by (record, stage, attempt), for drills."""

    name = "local"

    def __init__(self, fault_rate: float = 0.0) -> None:
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError(f"fault_rate={fault_rate} must be in [0, 1]")
        self.fault_rate = fault_rate

    def close(self) -> None:
        """Nothing to release: no clients, no files."""

    def _call(self, result: Any) -> StageCall[Any]:
        return StageCall(result=result, provider=self.name, model=MODEL, prompt_version=None)

    def _maybe_fail(self, ctx: RecordContext, stage: str) -> None:
        if self.fault_rate and _fraction(ctx.record_id, stage, ctx.attempt) < self.fault_rate:
            raise TransientError(
                f"injected fault (fault_rate={self.fault_rate}) record={ctx.record_id} "
                f"stage={stage} attempt={ctx.attempt}"
            )

    def analyze(self, ctx: RecordContext) -> StageCall[Analysis]:
        self._maybe_fail(ctx, "analyze")
        found = [s for s in collect(ctx) if s.kind != "reason"]
        problems = list(dict.fromkeys(s.text for s in found))[:10]
        summary = (
            f"{len(problems)} problem signal(s) in events, payload and notes; "
            f"strongest: {problems[0]}"
            if problems
            else "No problem found in events, payload or notes."
        )
        return self._call(Analysis(problems=problems, summary=summary[:2000]))

    def classify(self, ctx: RecordContext) -> StageCall[Classification]:
        self._maybe_fail(ctx, "classify")
        signals = collect(ctx) + analysis_signals(ctx.analysis)
        ranked = rank(score(signals))
        (best, best_score), (_, second_score) = ranked[0], ranked[1]
        if best_score <= 0:
            best = L.OTHER
        conf = confidence(best_score, second_score)
        top = ", ".join(f"{label}={value:.2f}" for label, value in ranked[:3] if value > 0)
        support = "; ".join(s.text for s in signals if s.label is best)[:1500]
        notes = f"scores: {top or 'none'}. evidence for {best}: {support or 'none'}"
        result = Classification(label=best, confidence=conf, notes=notes[:2000])
        return self._call(result)

    def resolve(self, ctx: RecordContext) -> StageCall[Resolution]:
        self._maybe_fail(ctx, "resolve")
        if ctx.classification is None:
            raise PermanentError("resolve called without a classification")
        actions, why = plan(ctx, ctx.classification.label)
        result = Resolution(automatable=bool(actions), actions=actions, rationale=why)
        return self._call(result)
