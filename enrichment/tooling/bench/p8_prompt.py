"""P8 prompt builder: one stage's prompt built from a worst-case record that ingestion still
accepts (issue 22, finding 1), in this process; no services used.

Two records, each one line just under MAX_LINE_BYTES, checked to pass `parse_line` with the
default limits: (a) the most keys, each as long as allowed, with adversarial values; (b) the
longest texts allowed. Every text is a run that the old e-mail pattern read quadratically
(word characters, "@" and dots, digit groups). The figure is the slower record's median CPU
time for `render_user` plus the stage's own check (`record_limits.check_record`), over
`RUNS` runs; the target is well under a second (before the fix: about 2 h per stage).
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import structlog

from enrichment.core.provider import RecordContext
from enrichment.core.record_limits import check_record
from enrichment.core.settings import RecordLimits
from enrichment.ingestion.lines import MAX_LINE_BYTES, parse_line
from enrichment.providers.prompts import load, render_user
from enrichment.tooling.bench.common import Options, Row, Services

log = structlog.get_logger(__name__)

RUNS = 5
TARGET_S = 1.0
_PIECES = ("a", "1 ", "@a.", "4111 ", "DE00 ", "x@")


def _text(i: int, size: int) -> str:
    piece = _PIECES[i % len(_PIECES)]
    return (piece * (size // len(piece) + 1))[:size]


def _line(payload: dict[str, Any], limits: RecordLimits) -> dict[str, Any]:
    return {
        "tenant": "p8-3pl",
        "order": {"external_id": "O-1", "payload": payload, "events": []},
        "exception": {
            "external_id": "E-1",
            "reason_code": "DAMAGED",
            "severity": "high",
            "notes": _text(0, limits.max_notes_chars),
        },
    }


def _fill(limits: RecordLimits, key_chars: int, value_chars: int) -> dict[str, Any]:
    """As many keys of `key_chars` with values of `value_chars` as a line holds."""
    room = MAX_LINE_BYTES - limits.max_notes_chars - 1000
    count = min(limits.max_keys, room // (key_chars + value_chars + 6))
    keys = (f"{i:06d}{_text(i + 1, key_chars - 6)}" for i in range(count))
    return {k: _text(i, value_chars) for i, k in enumerate(keys)}


def worst_records(limits: RecordLimits) -> dict[str, dict[str, Any]]:
    """The two worst-case lines, each checked to be accepted by ingestion."""
    room = MAX_LINE_BYTES - limits.max_notes_chars - 2000
    budget = room // limits.max_keys - limits.max_key_chars - 8
    lines = {
        "most keys": _line(_fill(limits, limits.max_key_chars, budget), limits),
        "longest texts": _line(_fill(limits, 64, limits.max_text_chars), limits),
    }
    for line in lines.values():
        raw = json.dumps(line).encode()
        assert len(raw) <= MAX_LINE_BYTES, len(raw)
        parse_line(raw, 2, limits=limits)  # raises LineError if ingestion would refuse it
    return lines


def _cpu_s(line: dict[str, Any], limits: RecordLimits) -> float:
    ctx = RecordContext(
        tenant=line["tenant"], record_id=1, attempt=0, reason_code="DAMAGED", severity="high",
        notes=line["exception"]["notes"], order=line["order"]["payload"], events=[],
    )  # fmt: skip
    prompts = load("v2")
    times = []
    for _ in range(RUNS):
        started = time.process_time()
        check_record(ctx, limits)
        render_user(prompts, "analyze", ctx)
        times.append(time.process_time() - started)
    return statistics.median(times)


def bench_p8(services: Services, opts: Options) -> list[Row]:
    limits = RecordLimits()
    lines = worst_records(limits)
    cpu = {name: _cpu_s(line, limits) for name, line in lines.items()}
    worst = max(cpu, key=cpu.__getitem__)
    size = max(len(json.dumps(line).encode()) for line in lines.values())
    log.info("bench.p8", **{k.replace(" ", "_"): round(v, 4) for k, v in cpu.items()})
    return [
        Row(
            f"P8 prompt builder + check, worst accepted record ({size / 1e6:.2f} MB line)",
            f"{cpu[worst] * 1000:.1f} ms CPU per stage ({worst}; median of {RUNS})",
            f"{TARGET_S:g} s",
            f"{cpu[worst] / TARGET_S:.3f}",
            f"< {TARGET_S:g} s",
            cpu[worst] < TARGET_S,
            {"cpu_s": cpu, "line_bytes": size},
        )
    ]
