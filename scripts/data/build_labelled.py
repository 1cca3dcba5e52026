"""Build `labelled_exceptions.jsonl`: hand-written notes on generator-built orders and events.

Run `python -m scripts.data.build_labelled` from the repo root to rewrite the shipped file
(`enrichment/tooling/data/`; deterministic, seed 2027).
Orders, payloads and event timelines come from `enrichment.tooling.generate`; every note comes from
`notes_labelled`, whose texts are checked to differ from the generator's phrase tables.
Records are shuffled so the external id (which decides the train/test split) says nothing
about the label.
"""

from __future__ import annotations

import json
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

from enrichment.core.taxonomy import Label
from enrichment.tooling import generate, labelled
from scripts.data.notes_labelled import AMBIGUOUS, NOTES, VAGUE

L = Label
SEED = 2027
OUT = labelled.DEFAULT_PATH
TENANTS = ("acme-3pl", "northwind-fulfil", "kestrel-logistics")
# Share of plain records whose telling events never reached us: only the note is left.
DROP_KEY_EVENTS = 0.3

# Our own reason-code mix per label: noisier than the generator's, with codes the rules
# do not know ("WH_HOLD", "CS") and shared ones ("CARRIER_EXC", "SLA_BREACH").
REASONS: dict[Label, tuple[str, ...]] = {
    L.ADDRESS_INVALID: ("ADDR_INVALID", "ADDRESS", "CARRIER_EXC", "UNKNOWN", "RTS", "addr"),
    L.PAYMENT_FAILED: ("PAY_DECLINE", "PAYMENT", "PAY_HOLD", "FRAUD_REVIEW", "UNKNOWN"),
    L.INVENTORY_SHORTAGE: ("OOS", "STOCKOUT", "SHORT_PICK", "WH_HOLD", "LATE_PICK"),
    L.DAMAGED_PACKAGE: ("DMG", "DAMAGE", "CARRIER_EXC", "CS", "RETURN"),
    L.CUSTOMER_UNAVAILABLE: ("NDR", "DELIVERY_ATTEMPT", "CARRIER_EXC", "UNKNOWN"),
    L.DELIVERY_DELAY: ("LATE_DELIVERY", "SLA_BREACH", "CARRIER_EXC", "CS"),
    L.PICK_DELAY: ("LATE_PICK", "SLA_BREACH", "WH_HOLD", "UNKNOWN"),
    L.PACK_DELAY: ("LATE_PACK", "SLA_BREACH", "WH_HOLD", "LATE_PICK"),
    L.MISSING_SCAN: ("NO_SCAN", "TRACKING", "CARRIER_EXC", "SLA_BREACH", "CS"),
    L.SYSTEM_ERROR: ("SYS_ERR", "INTEGRATION", "UNKNOWN", "WH_HOLD"),
    L.OTHER: ("CS_REQUEST", "CS", "MISC", "UNKNOWN"),
}


def _check_distinct() -> None:
    """Refuse to build if a note repeats a generator template (the set must be our words)."""
    theirs = {t.lower().strip() for ts in generate.NOTES.values() for t in ts}
    theirs |= {t.lower().strip() for t in generate.VAGUE_NOTES if t}
    ours = [n for ns in NOTES.values() for n in ns] + list(VAGUE) + [a[3] for a in AMBIGUOUS]
    clash = [n for n in ours if n.lower().strip() in theirs]
    if clash:
        raise SystemExit(f"notes copied from the generator: {clash}")


def _events(rng: random.Random, label: Label, carrier: str, *, keep_key: bool) -> list[Any]:
    steps = generate.TIMELINES[label](rng, carrier)
    return [s for s in steps if keep_key or not s.key]


def _line(
    rng: random.Random, n: int, label: Label, note: str | None, steps: list[Any], reason: str
) -> dict[str, Any]:
    """One JSONL record in the ingest format (true label in exception.true_label)."""
    created = generate.BASE_TIME + timedelta(minutes=rng.randint(0, 60 * 24 * 20))
    payload = generate._payload(rng, label, n, created)
    raise_after_h = rng.uniform(*generate.RAISE_AFTER_H.get(label, (0.1, 3.0)))
    order = {
        "external_id": "",
        "payload": payload,
        "events": generate._events(steps, created, raise_after_h),
    }
    exception = {
        "external_id": "",
        "reason_code": reason,
        "severity": rng.choice(generate.SEVERITIES[label]),
        "notes": note,
        "true_label": str(label),
    }
    return {"tenant": rng.choice(TENANTS), "order": order, "exception": exception}


def _plain(rng: random.Random) -> list[dict[str, Any]]:
    out = []
    for label, notes in NOTES.items():
        for note in notes:
            keep = rng.random() >= DROP_KEY_EVENTS
            steps = _events(rng, label, "UPS", keep_key=keep)
            out.append(_line(rng, len(out), label, note, steps, rng.choice(REASONS[label])))
    return out


def _vague(rng: random.Random) -> list[dict[str, Any]]:
    """Vague or empty notes: twice each, on random labels; a third lose their events too."""
    out = []
    for note in [*VAGUE, *VAGUE, None, None, "", ""]:
        label = rng.choice(list(Label))
        steps = _events(rng, label, "DHL", keep_key=rng.random() >= 0.33)
        out.append(_line(rng, len(out), label, note, steps, rng.choice(REASONS[label])))
    return out


def _ambiguous(rng: random.Random) -> list[dict[str, Any]]:
    out = []
    for label, other, mode, note in AMBIGUOUS:
        steps = _events(rng, label, "FedEx", keep_key=True)
        reason = rng.choice(REASONS[other if mode == "conflict" else label])
        if mode == "mixed":
            steps += _events(rng, other, "FedEx", keep_key=True)[-1:]
        out.append(_line(rng, len(out), label, note, steps, reason))
    return out


def build(seed: int = SEED) -> list[dict[str, Any]]:
    """All records, shuffled, with external ids LAB-ORD-nnnnnn / LAB-EXC-nnnnnn."""
    _check_distinct()
    rng = random.Random(seed)
    lines = _plain(rng) + _vague(rng) + _ambiguous(rng)
    rng.shuffle(lines)
    for n, line in enumerate(lines, start=1):
        line["order"]["external_id"] = f"LAB-ORD-{n:06d}"
        line["exception"]["external_id"] = f"LAB-EXC-{n:06d}"
        line["order"]["payload"]["name"] = f"#{5000 + n}"
    return lines


def write_lines(path: Path, lines: list[dict[str, Any]]) -> None:
    """One JSON object a line, non-ASCII kept as written (the notes are in many languages)."""
    with path.open("w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")


def main() -> int:
    lines = build()
    write_lines(OUT, lines)
    print(f"wrote {len(lines)} labelled records to {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
