"""Build the styled labelled sets: `python -m scripts.data.build_styles` from the repo root.

One JSONL file per writing style (`style_<name>.jsonl`), each note written by hand in
`notes_<name>.py`: terse operator shorthand with typos, customers' emails (some forwarded),
carrier and WMS event text pasted by ops, and notes in other languages on orders to
non-English addresses. Every style gets the same mix of evidence (`VARIANTS`: the telling
event, only structural hints, or nothing but the note), the same share of two problems at
once and of a reason code that points elsewhere, so that styles differ in their words only.
Deterministic (seed 2031). The line format is the ingest format; the style is the file's.
"""

from __future__ import annotations

import importlib
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

from enrichment.core.taxonomy import Label
from enrichment.tooling import generate, labelled
from scripts.data.build_labelled import REASONS, TENANTS, write_lines
from scripts.data.places import international_address, with_defect
from scripts.data.timelines import TIMELINES

L = Label
SEED = 2031
STYLES = ("shorthand", "email", "system", "multilingual")
VARIANTS = (("full", 0.5), ("implicit", 0.3), ("none", 0.2))
MIXED_SHARE = 0.1  # a second problem's telling event on the same order
OFF_REASON_SHARE = 0.15  # a reason code that belongs to another label
CARRIERS = ("UPS", "FedEx", "DHL", "DPD", "PostNL", "InPost", "Correos", "Colissimo")
# Another WMS's and carrier's names for the milestones, on this share of the orders in
# every style: the provider must read whose-ever feed it gets (rules.EVENT_ALIASES).
FOREIGN_FEED_SHARE = 0.3
FOREIGN_NAMES = {
    "order_created": "order_placed", "payment_captured": "payment_received",
    "allocated": "stock_reserved", "released_to_pick": "wave_released",
    "picked": "pick_confirmed", "packed": "pack_confirmed", "label_created": "label_printed",
    "picked_up": "origin_scan", "in_transit": "arrival_scan",
    "out_for_delivery": "with_courier", "delivered": "proof_of_delivery",
    "delivery_attempted": "attempted_delivery",
}  # fmt: skip


def path_for(style: str) -> Path:
    return labelled.STYLE_FILES[style]


def _variant(rng: random.Random) -> str:
    roll, acc = rng.random(), 0.0
    for name, share in VARIANTS:
        acc += share
        if roll < acc:
            return name
    return VARIANTS[-1][0]


def _steps(rng: random.Random, label: Label, variant: str, carrier: str) -> list[Any]:
    steps = TIMELINES[label](rng, carrier, variant)
    if rng.random() < MIXED_SHARE:
        other = rng.choice([x for x in Label if x not in (label, L.OTHER)])
        keys = [s for s in TIMELINES[other](rng, carrier, "full") if s.key]
        tail = [s for s in steps if s.type == "exception_opened"]
        steps = [s for s in steps if s.type != "exception_opened"] + keys[-1:] + tail
    return steps


def _events(rng: random.Random, steps: list[Any], created) -> list[dict[str, Any]]:
    raise_after_h = 0.0 if steps and steps[-1].type == "exception_opened" else rng.uniform(0.1, 3)
    events = generate._events(steps, created, raise_after_h)
    if raise_after_h == 0.0:
        events.pop()  # the timeline said when it was raised; no second exception_opened
    if rng.random() < FOREIGN_FEED_SHARE:
        for event in events:
            event["type"] = FOREIGN_NAMES.get(event["type"], event["type"])
    return events


def _payload(rng: random.Random, label: Label, created, *, intl: bool, defect: bool):
    payload = generate._payload(rng, L.OTHER, 0, created)  # a clean address to start from
    if intl:
        payload["shipping_address"] = international_address(rng, payload["phone"])
    if defect:
        payload["shipping_address"] = with_defect(rng, payload["shipping_address"])
    return payload


def _financial_status(rng: random.Random, label: Label, variant: str) -> str:
    if label is L.PAYMENT_FAILED and variant != "none":
        return rng.choice(("pending", "voided", "pending"))
    return rng.choice(("paid",) * 10 + ("authorized", "refunded"))


def _line(rng: random.Random, style: str, label: Label, note: str, *, variant: str) -> dict:
    created = generate.BASE_TIME + timedelta(minutes=rng.randint(0, 60 * 24 * 20))
    carrier = rng.choice(CARRIERS)
    steps = _steps(rng, label, variant, carrier)
    # A carrier code already says the address is wrong (timelines._address, implicit).
    coded = any(s.type == "exception" and ("DEX" in s.detail or "A2" in s.detail) for s in steps)
    defect = (label is L.ADDRESS_INVALID and variant != "none" and not coded
              and (variant == "implicit" or rng.random() < 0.5))  # fmt: skip
    intl = style == "multilingual" or rng.random() < 0.15
    payload = _payload(rng, label, created, intl=intl, defect=defect)
    payload["financial_status"] = _financial_status(rng, label, variant)
    payload["shipping_lines"] = [{"carrier": carrier, "service": "Standard"}]
    off = rng.random() < OFF_REASON_SHARE
    reason_label = rng.choice([x for x in Label if x is not label]) if off else label
    exception = {
        "external_id": "",
        "reason_code": rng.choice(REASONS[reason_label]),
        "severity": rng.choice(generate.SEVERITIES[label]),
        "notes": note,
        "true_label": str(label),
    }
    order = {"external_id": "", "payload": payload, "events": _events(rng, steps, created)}
    return {"tenant": rng.choice(TENANTS), "order": order, "exception": exception}


def build(style: str, seed: int = SEED) -> list[dict[str, Any]]:
    """The style's records, shuffled, with ids STY-<STYLE>-ORD/EXC-nnnn."""
    notes = importlib.import_module(f"scripts.data.notes_{style}")
    rng = random.Random(f"{seed}:{style}")
    lines = [
        _line(rng, style, label, note, variant=_variant(rng))
        for label, texts in notes.NOTES.items()
        for note in texts
    ]
    for note in notes.VAGUE:
        lines.append(_line(rng, style, rng.choice(list(Label)), note, variant="full"))
    for label, note in notes.INJECTIONS:  # the label must rest on evidence: give it some
        lines.append(_line(rng, style, label, note, variant=rng.choice(("full", "implicit"))))
    rng.shuffle(lines)
    tag = style[:3].upper()
    for n, line in enumerate(lines, start=1):
        line["order"]["external_id"] = f"STY-{tag}-ORD-{n:04d}"
        line["exception"]["external_id"] = f"STY-{tag}-EXC-{n:04d}"
        line["order"]["payload"]["name"] = f"#{tag}{7000 + n}"
    return lines


def main() -> int:
    for style in STYLES:
        lines = build(style)
        write_lines(path_for(style), lines)
        print(f"wrote {len(lines)} {style} records to {path_for(style)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
