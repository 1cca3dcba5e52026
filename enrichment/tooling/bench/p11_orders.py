"""P11 orders found before the customer calls (issue 25): generated order timelines
(tooling/generate/timelines.py, `--p11-orders` orders, seed `--p11-seed`) replayed at
`--p11-speed` through the API (uvicorn) into a fleet with the local provider (no network),
then the problems it raised scored against the exceptions the tenant raised later
(tooling/replay_score.py): precision, recall and the median lead time in timeline hours.

The fleet: one worker (`--p11-pool`), and this process sending a sweep every SWEEP_EVERY_S
instead of beat. At 3600x one wall second is a timeline hour: a watch that new events made
due waits for the next sweep, so the sweep's interval is part of the lead time measured.

Recall has a ceiling by design: the timelines' `unforeseen` orders (a damaged parcel reported
after delivery) show nothing a watch could see. The target asks for precision >= 0.9 and
every foreseeable exception (a broken promise) raised first.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import httpx
import structlog

from enrichment.core import db, tenants
from enrichment.tooling import replay, replay_score
from enrichment.tooling.bench.common import Options, Row, Services, reset_data, sql
from enrichment.tooling.bench.fleet import free_port, start_worker
from enrichment.tooling.bench.p9_api import _serve
from enrichment.tooling.generate import timelines
from enrichment.tooling.processes import Proc, stop_all, wait_for

log = structlog.get_logger(__name__)

TENANT = "p11-3pl"
SWEEP_EVERY_S = 1.0
PRECISION_TARGET = 0.9
FLEET_ENV = {"ENRICHMENT_AI_PROVIDER": "local"}
# Open watches whose look is due or under way: 0 once the fleet has caught up with the replay.
_DUE_WATCHES = (
    "SELECT count(*) FROM exception_records WHERE record_type = 'order'"
    " AND enriched_at IS NULL AND escalated_at IS NULL AND next_attempt_at <= now()"
)


def _sweeping(stop: threading.Event) -> None:
    """A sweep every SWEEP_EVERY_S on the bench's broker. Through an app made here: the
    `workers.app` this process imported was made before `prepare` chose the broker."""
    from enrichment.core.settings import get_settings
    from workers.app import make_app

    app = make_app(get_settings())
    try:
        while not stop.wait(SWEEP_EVERY_S):
            app.send_task("enrichment.sweep")
    finally:
        app.close()


def measure(services: Services, opts: Options) -> dict[str, Any]:
    """Replay the generated timelines into a fresh tenant with the fleet running; the score."""
    reset_data(services)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    path = timelines.write_timelines(
        services.out_dir / "p11-timeline.jsonl", count=opts.p11_orders, seed=opts.p11_seed
    )
    steps = replay.read_timeline(path)
    with db.session_factory(services.db_url).begin() as s:
        tenant, key = tenants.create_tenant(s, TENANT)
        tenant_id = tenant.id
    procs: list[Proc] = [start_worker(services, opts.p11_pool, "p11", **FLEET_ENV)]
    stop = threading.Event()
    sweeper = threading.Thread(target=_sweeping, args=(stop,), daemon=True)
    try:
        port = free_port()
        procs.append(_serve(services, port))
        sweeper.start()
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:
            result = replay.replay(
                steps, client, TENANT, speed=opts.p11_speed, progress=log.info,
                progress_every_s=30.0,
            )  # fmt: skip
        wait_for(lambda: sql(services, _DUE_WATCHES)[0][0] == 0, timeout_s=120,
                 what="the watches caught up", poll_s=1.0)  # fmt: skip
    finally:
        stop.set()
        stop_all(procs)
    with db.session_factory(services.db_url)() as s:
        raised = replay_score.raised_problems(s, tenant_id)
    return _figures(steps, raised, result)


def _figures(steps: list, raised: list, result: replay.Result) -> dict[str, Any]:
    scored = replay_score.score(steps, raised, result.dating)
    kinds = {s.order: s.body["truth"]["kind"] for s in steps if s.step == "order"}
    expected = replay_score.expected_problems(steps)
    foreseeable = sum(kinds[order] == "stall" for order, _label in expected)
    return {
        "orders": len(kinds),
        "timeline_h": (steps[-1].at - steps[0].at).total_seconds() / 3600,
        "raised": scored.raised,
        "expected": scored.expected,
        "foreseeable": foreseeable,
        "hits": scored.hits,
        "precision": scored.precision,
        "recall": scored.recall,
        "median_lead_h": scored.median_lead_h,
        "lead_h": scored.lead_h,
        "behind_s": result.behind_s,
        "rejected": result.rejected[:10],
        "speed": result.dating.speed,
    }


def bench_p11(services: Services, opts: Options) -> list[Row]:
    r = measure(services, opts)
    log.info("bench.p11", **{k: v for k, v in r.items() if k != "lead_h"})
    precision, recall, lead = r["precision"] or 0.0, r["recall"] or 0.0, r["median_lead_h"]
    ceiling = r["foreseeable"] / r["expected"] if r["expected"] else 1.0
    ok = precision >= PRECISION_TARGET and r["hits"] >= r["foreseeable"] and not r["rejected"]
    return [
        Row(
            f"P11 orders: {r['orders']} order timelines ({r['timeline_h']:.0f} h) replayed at"
            f" {r['speed']:g}x, local provider",
            f"precision {precision:.2f} ({r['hits']}/{r['raised']} raised), recall {recall:.2f}"
            f" ({r['hits']}/{r['expected']}), median lead"
            f" {'-' if lead is None else f'{lead:.1f} h'}",
            f"recall ceiling {ceiling:.2f} ({r['foreseeable']} foreseeable)",
            f"{recall / ceiling:.2f}" if ceiling else "-",
            f"precision >= {PRECISION_TARGET}; every foreseeable one raised first",
            ok,
            r,
        )
    ]
