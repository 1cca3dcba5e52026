"""Realistic demo backlog: Shopify-like orders with WMS/carrier/payment events and one
exception record each, written as JSONL for `enrichment ingest`.

Deterministic under the seed (one `random.Random(seed)`, a fixed calendar), so a demo,
a test and a benchmark see the same records. About 17% of the records are deliberately
ambiguous (conflicting reason code and notes, vague notes, missing events, two problems
at once): real exception queues are like that, and a classifier must be unsure about them.
Emails and phones are personal data on purpose; they use reserved example domains and
fictional number ranges.

Layout: `orders` (payloads), `events` (timelines per label), `notes` (reason codes, severities,
phrase tables), `cases` (one case from all three, and the ambiguity); this module writes JSONL.
"""

from __future__ import annotations

import json
from pathlib import Path

from enrichment.tooling.generate.cases import BASE_TIME, generate_cases, generate_lines
from enrichment.tooling.generate.events import RAISE_AFTER_H, TIMELINES, _events
from enrichment.tooling.generate.notes import NOTES, SEVERITIES, VAGUE_NOTES
from enrichment.tooling.generate.orders import _payload

__all__ = [
    "BASE_TIME",
    "NOTES",
    "RAISE_AFTER_H",
    "SEVERITIES",
    "TIMELINES",
    "VAGUE_NOTES",
    "generate_cases",
    "generate_lines",
    "write_jsonl",
    # Private, but `scripts/data/build_labelled.py` builds its orders and timelines with them.
    "_events",
    "_payload",
]


def write_jsonl(
    out: str | Path, *, tenant: str, count: int, seed: int, id_prefix: str = ""
) -> Path:
    """Write `count` lines to `out` (parent folders created); returns the path written."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for line in generate_lines(tenant, count, seed, id_prefix):
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    return path
