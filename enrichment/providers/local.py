"""The local provider: rules plus a small trained model, no network, no key.

analyze collects weighted evidence (event types, event timing, payment status, address
completeness, keywords in the ops notes, the reason code). classify feeds that evidence, the
rules' per-label totals and the words of the notes into a multinomial logistic regression
(`local_model.json`), and maps its top probability to a calibrated confidence through an
isotonic fit (`local_calibration.json`); both files are written by `python -m
enrichment.tooling.train_local` from the training part of the shipped labelled set. resolve picks
allow-listed actions for the classified label. The same input always gives the same output;
nothing here is random, and `reference_label` is never seen.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from enrichment.core.errors import PermanentError, TransientError
from enrichment.core.provider import RecordContext, StageCall
from enrichment.core.schemas import Analysis, Classification, Resolution
from enrichment.core.taxonomy import ALLOWED_ACTIONS, Action, Label

L = Label
MODEL = "rules-logreg-v1"
MODEL_PATH = Path(__file__).with_name("local_model.json")
CALIBRATION_PATH = Path(__file__).with_name("local_calibration.json")

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


# ---------------------------------------------------------------- model and calibration


def softmax(logits: list[float]) -> list[float]:
    top = max(logits)
    exps = [math.exp(v - top) for v in logits]
    total = sum(exps)
    return [v / total for v in exps]


@dataclass(frozen=True)
class LinearModel:
    """Multinomial logistic regression over sparse features: logits = bias + sum(x * w)."""

    labels: tuple[Label, ...]
    bias: tuple[float, ...]
    weights: dict[str, tuple[float, ...]]
    version: str

    def probabilities(self, feats: dict[str, float]) -> dict[Label, float]:
        """P(label | features) for every label; unknown features are ignored."""
        logits = list(self.bias)
        for name, value in feats.items():
            row = self.weights.get(name)
            if row is not None:
                for j, w in enumerate(row):
                    logits[j] += value * w
        return dict(zip(self.labels, softmax(logits), strict=True))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LinearModel:
        weights = {name: tuple(row) for name, row in zip(data["features"], data["weights"],
                                                         strict=True)}  # fmt: skip
        labels = tuple(Label(x) for x in data["labels"])
        return cls(labels, tuple(data["bias"]), weights, data.get("version", "?"))


@dataclass(frozen=True)
class Calibration:
    """A monotone map from the model's top probability to P(correct), by interpolation
    between isotonic-fit points (x ascending); flat beyond the first and last point."""

    xs: tuple[float, ...]
    ys: tuple[float, ...]

    def __call__(self, raw: float) -> float:
        i = bisect.bisect_left(self.xs, raw)
        if i == 0:
            return self.ys[0]
        if i == len(self.xs):
            return self.ys[-1]
        x0, x1, y0, y1 = self.xs[i - 1], self.xs[i], self.ys[i - 1], self.ys[i]
        return y0 + (y1 - y0) * (raw - x0) / (x1 - x0) if x1 > x0 else y1

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibration:
        return cls(tuple(data["x"]), tuple(data["y"]))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PermanentError(
            f"{path.name} is missing: run `python -m enrichment.tooling.train_local` to write it"
        ) from exc


@functools.cache
def load_model(model_path: Path = MODEL_PATH, calibration_path: Path = CALIBRATION_PATH):
    """The shipped model and its calibration per group, read once per process (a few ms,
    no network): (LinearModel, {"clear": Calibration, "conflict": Calibration})."""
    model = LinearModel.from_json(_read_json(model_path))
    groups = _read_json(calibration_path)["groups"]
    return model, {name: Calibration.from_json(fit) for name, fit in groups.items()}


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
    """Rules plus a calibrated linear model. `fault_rate` in [0, 1] (default 0): share of
    calls that fail with TransientError on purpose, chosen by (record, stage, attempt), for
    drills. The model files are read on the first classify, once per process."""

    name = "local"

    def __init__(self, fault_rate: float = 0.0) -> None:
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError(f"fault_rate={fault_rate} must be in [0, 1]")
        self.fault_rate = fault_rate

    def close(self) -> None:
        """Nothing to release: no clients, no open files (the model is plain data)."""

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
        """The model's most likely label; confidence is its calibrated P(correct).

        The analysis is not read: for this provider it is a function of the same record,
        and the model was trained without it.
        """
        self._maybe_fail(ctx, "classify")
        model, calibrations = load_model()
        signals = collect(ctx)
        group = calibration_group(signals)
        ranked = rank(model.probabilities(record_features(ctx, signals)))
        if not signals and not WORD.search(ctx.notes or ""):
            # Nothing observed and nothing written: no label is supported, so say OTHER
            # (a person looks) at the calibrated confidence of the model's OTHER share.
            ranked.sort(key=lambda kv: kv[0] is not L.OTHER)
        (best, raw), runner_up = ranked[0], ranked[1]
        conf = round(min(1.0, max(0.0, calibrations[group](raw))), 3)
        top = ", ".join(f"{label}={p:.2f}" for label, p in ranked[:3])
        support = "; ".join(s.text for s in signals if s.label is best)[:1500]
        notes = (
            f"model p: {top}; calibrated ({group}) confidence {conf} (raw {raw:.3f}, runner-up "
            f"{runner_up[0]}). rule evidence for {best}: {support or 'none'}"
        )
        return self._call(Classification(label=best, confidence=conf, notes=notes[:2000]))

    def resolve(self, ctx: RecordContext) -> StageCall[Resolution]:
        self._maybe_fail(ctx, "resolve")
        if ctx.classification is None:
            raise PermanentError("resolve called without a classification")
        actions, why = plan(ctx, ctx.classification.label)
        result = Resolution(automatable=bool(actions), actions=actions, rationale=why)
        return self._call(result)
