"""The shipped labelled set: loading it, turning lines into contexts, and the fixed split.

The split is by exception external id (blake2b, so it is stable across Python runs and
machines): about 40% of the records are held out for `enrichment eval`, and the local
model and its calibration are fitted on the rest only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enrichment.core.provider import RecordContext
from enrichment.core.taxonomy import Label

DEFAULT_PATH = Path(__file__).parent / "data" / "labelled_exceptions.jsonl"
# Share of records held out from training and calibration (by external id).
HELD_OUT_SHARE = 0.4


@dataclass(frozen=True)
class Example:
    """One labelled record: its id, true label and the context a provider sees."""

    external_id: str
    label: Label
    ctx: RecordContext


def id_fraction(external_id: str, salt: str = "split") -> float:
    """A stable number in [0, 1) for an id (hash() is salted per process, so not that)."""
    digest = hashlib.blake2b(f"{salt}:{external_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def is_held_out(external_id: str) -> bool:
    return id_fraction(external_id) < HELD_OUT_SHARE


def to_context(line: dict[str, Any], record_id: int) -> RecordContext:
    """The RecordContext for one JSONL line (attempt 0; the true label is not passed on)."""
    order, exc = line["order"], line["exception"]
    return RecordContext(
        tenant=line["tenant"],
        record_id=record_id,
        attempt=0,
        reason_code=exc.get("reason_code") or "",
        severity=exc.get("severity") or "medium",
        notes=exc.get("notes"),
        order=order.get("payload") or {},
        events=order.get("events") or [],
    )


def read_lines(path: str | Path) -> Iterable[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as f:
        for raw in f:
            if raw.strip():
                yield json.loads(raw)


def load(path: str | Path = DEFAULT_PATH) -> list[Example]:
    """Every line with a true label, in file order (record ids count from 1)."""
    examples = []
    for n, line in enumerate(read_lines(path), start=1):
        true = line["exception"].get("true_label")
        if true:
            ext = line["exception"].get("external_id") or f"line-{n}"
            examples.append(Example(ext, Label(true), to_context(line, record_id=n)))
    return examples


def split(examples: list[Example]) -> tuple[list[Example], list[Example]]:
    """(training part, held-out part) of `examples`, by external id."""
    train = [e for e in examples if not is_held_out(e.external_id)]
    test = [e for e in examples if is_held_out(e.external_id)]
    return train, test
