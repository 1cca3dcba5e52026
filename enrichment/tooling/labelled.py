"""The shipped labelled sets: loading them, turning lines into contexts, and their styles.

Each file is one writing style (the line format is the ingest format, read by ingestion's own
parser; the style is the file's): `ops` is the first hand-labelled set (328 records of mixed
ops notes), the others were written for leave-one-style-out evaluation
(`scripts/data/build_styles.py`): terse shorthand,
customers' emails, carrier and WMS event text, and other languages on non-English addresses.
`enrichment eval` holds out one style at a time; the shipped model is fitted on all of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enrichment.core.provider import RecordContext
from enrichment.core.taxonomy import Label
from enrichment.ingestion.lines import LineError, parse_line

DATA_DIR = Path(__file__).parent / "data"
DEFAULT_PATH = DATA_DIR / "labelled_exceptions.jsonl"
STYLE_FILES: dict[str, Path] = {
    "ops": DEFAULT_PATH,
    "shorthand": DATA_DIR / "style_shorthand.jsonl",
    "email": DATA_DIR / "style_email.jsonl",
    "system": DATA_DIR / "style_system.jsonl",
    "multilingual": DATA_DIR / "style_multilingual.jsonl",
}
STYLES = tuple(STYLE_FILES)


@dataclass(frozen=True)
class Example:
    """One labelled record: its id, true label, the context a provider sees, its style."""

    external_id: str
    label: Label
    ctx: RecordContext
    style: str = ""


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


def load_checked(path: str | Path, style: str = "") -> tuple[list[Example], list[tuple[int, str]]]:
    """Every line with a true label, in file order (record ids count the non-blank lines
    from 1), read through the ingest line format (`ingestion.lines.parse_line`: the same
    shapes, limits and reasons as `enrichment ingest`); and the refused lines as (1-based
    line number, reason)."""
    examples, refused, n = [], [], 0
    with Path(path).open("rb") as f:
        for line_no, raw in enumerate(f, start=1):
            if not (raw := raw.rstrip(b"\r\n")).strip():
                continue
            n += 1
            try:
                line = parse_line(raw, line_no)
            except LineError as exc:
                refused.append((line_no, str(exc)))
                continue
            if (true := line.exception.true_label) is not None:
                ctx = to_context(line.model_dump(mode="json"), record_id=n)
                examples.append(Example(line.exception.external_id, true, ctx, style))
    return examples, refused


def load(path: str | Path = DEFAULT_PATH, style: str = "") -> list[Example]:
    """`load_checked`'s examples; a refused line is a ValueError (a shipped set is valid)."""
    examples, refused = load_checked(path, style)
    if refused:
        line_no, reason = refused[0]
        raise ValueError(f"{path} line {line_no}: {reason}")
    return examples


def load_styles(styles: Iterable[str] = STYLES) -> list[Example]:
    """The shipped styled sets, each example tagged with its style."""
    return [e for style in styles for e in load(STYLE_FILES[style], style)]


def by_style(examples: Iterable[Example]) -> dict[str, list[Example]]:
    """Examples grouped by style, styles in first-seen order."""
    out: dict[str, list[Example]] = {}
    for e in examples:
        out.setdefault(e.style, []).append(e)
    return out
