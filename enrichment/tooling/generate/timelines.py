"""Order timelines for `enrichment replay` (issue 25): orders arriving, their events as they
happen, and the tenant's own exceptions arriving later, one timestamped step per JSONL line.

Each order follows the warehouse and carrier flow (allocated, released to pick, picked,
packed, label, picked up, in transit, out for delivery, delivered) and is one of:

- `healthy`: every milestone well inside its promise (core/order_watch.py's waits);
- `near_miss`: one milestone late in its promise (60-80 % of it), never past it;
- `stall`: one promise broken (no allocation, pick, pack, carrier scan or delivery in time):
  the tenant's own exception for it arrives `LAG_H` after the deadline, the order moves on
  `RESUME_H` later and is delivered; the fleet should have raised it before the tenant did;
- `unforeseen`: delivered on time, then the tenant reports a damaged parcel. Nothing in the
  order's events foretold it: no watch can raise it (recall's honest ceiling).

Steps, in time order (`at` is ISO 8601 UTC, the step's moment on the timeline's own clock):

    {"at": ..., "step": "order", "order": ORDER, "truth": {"kind": ..., "label": ...}}
    {"at": ..., "step": "events", "order": "ORD-7-00001", "events": [EVENT, ...]}
    {"at": ..., "step": "exception", "order": "ORD-7-00001", "exception": EXCEPTION}

ORDER and EXCEPTION are shaped as the orders and records routes take them; the exception's
`true_label` and the order's `truth` are the ground truth a replay is scored on (which orders
go wrong, with what label). Deterministic under the seed: one `random.Random(seed)` and a
fixed calendar (`cases.BASE_TIME`), never "now".
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from enrichment.core.order_watch import WAITS
from enrichment.core.taxonomy import Label, reason_label
from enrichment.tooling.generate.cases import BASE_TIME
from enrichment.tooling.generate.notes import REASON_CODES, SEVERITIES
from enrichment.tooling.generate.orders import _iso, _payload

LIMIT_H = {w.name: w.limit_h for w in WAITS}
LABEL_OF = {w.name: w.label for w in WAITS}
KINDS = {"healthy": 40, "near_miss": 12, "stall": 42, "unforeseen": 6}
STALLED = {"allocate": 6, "pick": 10, "pack": 8, "hand_over": 10, "delivery": 8}
LAG_H = (3.0, 10.0)  # the tenant's exception, after the broken promise's deadline
RESUME_H = (1.0, 6.0)  # the order moves on, after the tenant's exception
UNFORESEEN_H = (2.0, 24.0)  # the damage report, after delivery

# (source, type, the wait this milestone ends, its healthy gap in hours after the previous)
FLOW: tuple[tuple[str, str, str | None, tuple[float, float]], ...] = (
    ("wms", "allocated", "allocate", (0.2, 4.0)),
    ("wms", "released_to_pick", None, (0.2, 1.0)),
    ("wms", "picked", "pick", (1.0, 10.0)),
    ("wms", "packed", "pack", (0.3, 5.0)),
    ("carrier", "label_created", None, (0.1, 0.5)),
    ("carrier", "picked_up", "hand_over", (2.0, 14.0)),
    ("carrier", "in_transit", None, (4.0, 12.0)),
    ("carrier", "out_for_delivery", None, (10.0, 30.0)),
    ("carrier", "delivered", "delivery", (1.0, 8.0)),
)
# The event each wait runs from (the first of its start events in this flow).
STARTED_BY = {
    "allocate": "payment_authorized",
    "pick": "released_to_pick",
    "pack": "picked",
    "hand_over": "packed",
    "delivery": "picked_up",
}


def _pick(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _reason_code(rng: random.Random, label: Label) -> str:
    """A reason code in the tenant's words that names `label` (so it attaches)."""
    codes = [c for c in REASON_CODES.get(label, ()) if reason_label(c) is label]
    return rng.choice(codes) if codes else str(label)


def _event(source: str, kind: str, at: datetime, detail: str = "") -> dict[str, Any]:
    return {"source": source, "type": kind, "at": _iso(at), "detail": detail}


def _step(at: datetime, step: str, **body: Any) -> dict[str, Any]:
    return {"at": _iso(at), "step": step, **body}


def _flow(rng: random.Random, kind: str, wait: str | None, arrived: datetime) -> tuple:
    """The milestones' times, and when the tenant's exception comes (None: never)."""
    times = {"payment_authorized": arrived - timedelta(hours=0.04)}
    at, raised = arrived, None
    for _source, event, ends, gap in FLOW:
        at += timedelta(hours=rng.uniform(*gap))
        if ends is not None and ends == wait:
            began = times[STARTED_BY[wait]]
            limit = timedelta(hours=LIMIT_H[wait])
            if kind == "near_miss":
                at = max(at, began + limit * rng.uniform(0.6, 0.8))
            else:
                raised = began + limit + timedelta(hours=rng.uniform(*LAG_H))
                at = raised + timedelta(hours=rng.uniform(*RESUME_H))
        times[event] = at
    if kind == "unforeseen":
        raised = at + timedelta(hours=rng.uniform(*UNFORESEEN_H))
    return times, raised


def _order_steps(rng: random.Random, n: int, seed: int, prefix: str, window_h: float) -> list:
    kind = _pick(rng, KINDS)
    wait = _pick(rng, STALLED) if kind in ("stall", "near_miss") else None
    label = LABEL_OF[wait] if kind == "stall" else Label.DAMAGED_PACKAGE
    label = label if kind in ("stall", "unforeseen") else None
    created = BASE_TIME + timedelta(hours=rng.uniform(0.0, window_h))
    arrived = created + timedelta(hours=0.05)
    ext = f"{prefix}ORD-{seed}-{n:05d}"
    payload = _payload(rng, Label.PICK_DELAY, n, created)  # a clean payload: paid, deliverable
    gateway = rng.choice(("shopify_payments", "stripe", "paypal"))
    head = [
        _event("system", "order_created", created, "Order received from Shopify"),
        _event("payment", "payment_authorized", created + timedelta(hours=0.01), gateway),
        _event("payment", "payment_captured", arrived, f"{gateway}: captured"),
    ]
    order = {"external_id": ext, "payload": payload, "events": head}
    truth = {"kind": kind, "wait": wait, "label": str(label) if label else None}
    steps = [_step(arrived, "order", order=order, truth=truth)]
    times, raised = _flow(rng, kind, wait, arrived)
    for source, event, _ends, _gap in FLOW:
        events = [_event(source, event, times[event])]
        steps.append(_step(times[event], "events", order=ext, events=events))
    if raised is not None and label is not None:
        exception = {
            "external_id": f"{prefix}EXC-{seed}-{n:05d}",
            "reason_code": _reason_code(rng, label),
            "severity": rng.choice(SEVERITIES[label]),
            "notes": f"Raised by the tenant's rules: {str(label).lower().replace('_', ' ')}",
            "true_label": str(label),
        }
        steps.append(_step(raised, "exception", order=ext, exception=exception))
    return steps


def generate_steps(
    count: int, seed: int, *, window_h: float = 24.0, span_h: float | None = None, prefix: str = ""
) -> Iterator[dict[str, Any]]:
    """The steps of `count` orders arriving over `window_h` hours, in time order; with
    `span_h`, only the steps within that many hours of the first one."""
    rng = random.Random(seed)
    steps = [s for n in range(1, count + 1) for s in _order_steps(rng, n, seed, prefix, window_h)]
    steps.sort(key=lambda s: s["at"])  # stable: one order's steps at one moment keep their order
    if steps and span_h is not None:
        end = _iso(datetime.fromisoformat(steps[0]["at"]) + timedelta(hours=span_h))
        steps = [s for s in steps if s["at"] <= end]
    yield from steps


def write_timelines(out: str | Path, *, count: int, seed: int, **options: Any) -> Path:
    """Write the steps of `count` orders to `out` as JSONL; returns the path written."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for step in generate_steps(count, seed, **options):
            f.write(json.dumps(step, ensure_ascii=False) + "\n")
    return path
