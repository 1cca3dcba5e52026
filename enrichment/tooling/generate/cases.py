"""One case at a time: pick a label, build its order, timeline and notes, blur a share of
them into ambiguity. One `random.Random(seed)` drives it all, in a fixed order."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from enrichment.core.taxonomy import Label
from enrichment.tooling.generate.events import RAISE_AFTER_H, TIMELINES, Step, _events
from enrichment.tooling.generate.notes import REASON_CODES, SEVERITIES, VAGUE_NOTES, _note
from enrichment.tooling.generate.orders import _payload

# A fixed calendar (peak season), not "now": the same seed must give the same file.
BASE_TIME = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
AMBIGUOUS_SHARE = 0.17

# Relative frequency of each true label in a 3PL's exception queue.
LABEL_WEIGHTS: dict[Label, int] = {
    Label.ADDRESS_INVALID: 12,
    Label.PAYMENT_FAILED: 9,
    Label.INVENTORY_SHORTAGE: 11,
    Label.DAMAGED_PACKAGE: 9,
    Label.CUSTOMER_UNAVAILABLE: 9,
    Label.DELIVERY_DELAY: 12,
    Label.PICK_DELAY: 10,
    Label.PACK_DELAY: 7,
    Label.MISSING_SCAN: 9,
    Label.SYSTEM_ERROR: 6,
    Label.OTHER: 6,
}


@dataclass(frozen=True)
class Case:
    """One generated line and how it was made (for evaluation; never written to the file)."""

    line: dict[str, Any]
    label: Label
    ambiguous: bool


def _other_label(rng: random.Random, label: Label) -> Label:
    return rng.choice([x for x in Label if x is not label and x is not Label.OTHER])


def _blur(rng: random.Random, label: Label, steps: list[Step], parts: dict[str, Any]) -> None:
    """Make one case ambiguous in one of three realistic ways (mutates `steps`/`parts`)."""
    mode = rng.choice(("conflict", "sparse", "mixed"))
    other = _other_label(rng, label)
    if mode == "conflict":  # the source system and the note point elsewhere
        parts["reason_code"] = rng.choice(REASON_CODES[other])
        parts["notes"] = _note(rng, other, parts["fill"])
    elif mode == "sparse":  # the telling events were never sent; the note says nothing
        steps[:] = [s for s in steps if not s.key]
        parts["notes"] = rng.choice(VAGUE_NOTES)
    else:  # two problems at once, and the note mentions the other one
        steps.extend(s for s in TIMELINES[other](rng, parts["carrier"]) if s.key)
        parts["notes"] = f"{parts['notes']} / {_note(rng, other, parts['fill'])}"


def _parts(rng: random.Random, label: Label, payload: dict[str, Any]) -> dict[str, Any]:
    """The exception's reason code and notes, and what note templates are filled with."""
    carrier = payload["shipping_lines"][0]["carrier"]
    fill = {
        "sku": payload["line_items"][0]["sku"],
        "carrier": carrier,
        "city": payload["shipping_address"]["city"] or "town",
        "hours": str(rng.randint(26, 96)),
    }
    return {
        "reason_code": rng.choice(REASON_CODES[label]),
        "notes": _note(rng, label, fill) if rng.random() < 0.9 else rng.choice(VAGUE_NOTES),
        "fill": fill,
        "carrier": carrier,
    }


def _case(rng: random.Random, tenant: str, n: int, seed: int, id_prefix: str) -> Case:
    label = rng.choices(list(LABEL_WEIGHTS), weights=list(LABEL_WEIGHTS.values()))[0]
    created = BASE_TIME + timedelta(minutes=rng.randint(0, 60 * 24 * 20))
    payload = _payload(rng, label, n, created)
    steps = TIMELINES[label](rng, payload["shipping_lines"][0]["carrier"])
    parts = _parts(rng, label, payload)
    ambiguous = rng.random() < AMBIGUOUS_SHARE
    if ambiguous:
        _blur(rng, label, steps, parts)
    raise_after_h = rng.uniform(*RAISE_AFTER_H.get(label, (0.1, 3.0)))
    events = _events(steps, created, raise_after_h)
    exception = {
        "external_id": f"{id_prefix}EXC-{seed}-{n:06d}",
        "reason_code": parts["reason_code"],
        "severity": rng.choice(SEVERITIES[label]),
        "notes": parts["notes"],
        "true_label": str(label),
    }
    order = {"external_id": f"{id_prefix}ORD-{seed}-{n:06d}", "payload": payload, "events": events}
    line = {"tenant": tenant, "order": order, "exception": exception}
    return Case(line=line, label=label, ambiguous=ambiguous)


def generate_cases(tenant: str, count: int, seed: int, id_prefix: str = "") -> Iterator[Case]:
    """`count` cases with their label and ambiguity flag; deterministic under `seed`.

    `id_prefix` is put before every external id, so repeated runs don't collide.
    """
    rng = random.Random(seed)
    for n in range(1, count + 1):
        yield _case(rng, tenant, n, seed, id_prefix)


def generate_lines(
    tenant: str, count: int, seed: int, id_prefix: str = ""
) -> Iterator[dict[str, Any]]:
    """`count` JSONL-ready dicts (one exception record with its order each)."""
    for case in generate_cases(tenant, count, seed, id_prefix):
        yield case.line
