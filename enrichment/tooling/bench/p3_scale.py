"""P3 at scale (`p3s`): the claim, a monitor run over every tenant and the API's listing
routes on `--p3-records` records (10M for issue 26) over `--p3-tenants` tenants, with the
history a fleet leaves (3 attempts and 1 outbox event a record: `p3_scale_seed`).

Each call is timed `RUNS` times after one warm-up (median and p95), and the statements its
first timed run sent are captured from the engine and run again under EXPLAIN (ANALYZE,
BUFFERS), written to `p3s-explain.txt` in the out dir. Then the sizes: the database, every
table, and bytes per record, attempt and event (`p3s-sizes.json`).

- claim: `selection.claim_due` (a full `sweep_batch_size` batch) and `sweep_for_fleet` (the
  sweep's own call, as beat's task makes it), all tenants; rolled back. Target < 50 ms.
- monitor: `monitor.run_monitor` over all tenants (it commits its snapshots, as the task
  does); target a few seconds, here < 5 s. And `monitor.measure` for the biggest tenant.
- routes, in process (FastAPI's TestClient, the real app, its real session and auth), for
  the biggest tenant: a record (its story), a page of events (the first, and one deep in the
  cursor), the review queue, the backlog; target < 100 ms a page.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from enrichment.tooling.bench import p3_scale_seed as seeding
from enrichment.tooling.bench.common import MB, Options, Row, Services, reset_data, sql
from enrichment.tooling.bench.p3_queries import Capture, Captured, explain, rolled_back

log = structlog.get_logger(__name__)

RUNS = 20
MONITOR_RUNS = 3
CLAIM_TARGET_S, MONITOR_TARGET_S, ROUTE_TARGET_S = 0.050, 5.0, 0.100
BIG = 1  # the seed gives tenant 1 40 % of the records
_SKIP = ("SAVEPOINT", "RELEASE", "BEGIN", "COMMIT", "ROLLBACK")


@dataclass
class Measured:
    name: str
    target_s: float
    times_s: list[float]
    statements: list[Captured]

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def p95_s(self) -> float:
        if len(self.times_s) < 2:
            return self.times_s[0]
        return statistics.quantiles(self.times_s, n=20, method="inclusive")[18]


def timed(name: str, target_s: float, call: Callable[[], None], runs: int) -> Measured:
    """One warm-up call, then `runs` timed; the statements of the first timed run."""
    from sqlalchemy.engine import Engine

    call()
    times, statements = [], []
    for i in range(runs):
        capture = Capture(Engine) if i == 0 else None  # every engine: the API has its own
        started = time.perf_counter()
        try:
            call()
        finally:
            times.append(time.perf_counter() - started)
            if capture is not None:
                capture.close()
                statements = [c for c in capture.statements if not c.statement.startswith(_SKIP)]
    log.info("bench.p3s.timed", call=name, median_ms=round(statistics.median(times) * 1000, 1))
    return Measured(name, target_s, times, statements)


def in_session(services: Services, fn: Callable[[Any], None]) -> Callable[[], None]:
    def call() -> None:
        with rolled_back(services) as s:
            fn(s)

    return call


def db_calls(services: Services) -> list[Measured]:
    """The claim (two entry points) and the monitor."""
    from enrichment.core import db, selection
    from enrichment.core.models import Tenant, utcnow
    from enrichment.core.settings import get_settings
    from enrichment.metrics import monitor

    settings = get_settings()
    factory = db.session_factory(services.db_url)

    def measure_big(s: Any) -> None:
        monitor.measure(s, s.get(Tenant, BIG), settings, settings.monitor, now=utcnow())

    # The first run ever has no previous snapshot (its attempt pass reads all history); the
    # fleet's runs after it read from the previous one on: those are the ones measured.
    fresh = not sql(services, "SELECT count(*) FROM metric_snapshots")[0][0]
    started = time.perf_counter()
    monitor.run_monitor(factory, settings)
    name = "monitor run, the first ever" if fresh else "monitor run, the first of this bench"
    first = Measured(name, MONITOR_TARGET_S, [0.0], [])
    first.times_s = [time.perf_counter() - started]
    return [
        first,
        timed(
            "claim_due (all tenants, full batch)",
            CLAIM_TARGET_S,
            in_session(services, lambda s: selection.claim_due(s, settings)),
            RUNS,
        ),
        timed(
            "sweep_for_fleet (all tenants)",
            CLAIM_TARGET_S,
            in_session(services, lambda s: selection.sweep_for_fleet(s, settings)),
            RUNS,
        ),
        timed(
            f"monitor.measure (tenant {BIG})",
            MONITOR_TARGET_S,
            in_session(services, measure_big),
            MONITOR_RUNS,
        ),
        timed(
            "monitor run, all tenants",
            MONITOR_TARGET_S,
            lambda: monitor.run_monitor(factory, settings),
            MONITOR_RUNS,
        ),
    ]


def route_calls(services: Services) -> list[Measured]:
    """One page of each listing route of the biggest tenant, through the real app."""
    from fastapi.testclient import TestClient

    from enrichment.api import app
    from enrichment.core import db, tenants
    from enrichment.core.models import Tenant

    with db.session_factory(services.db_url).begin() as s:
        big = s.get(Tenant, BIG)
        key = tenants.rotate_key(big)
        big.settings = {"api_rpm": 0, "api_concurrency": 0}  # unlimited: the bench measures
        name = big.name
    record = sql(
        services,
        "SELECT external_id FROM exception_records WHERE tenant_id = :t AND id % 100 = 81 "
        "ORDER BY id DESC LIMIT 1",
        t=BIG,
    )[0][0]
    deep = _deep_cursor(services)
    headers = {"Authorization": f"Bearer {key}"}
    paths = {
        "GET records/{id} (a record's story)": f"/api/enrichment/records/{name}/{record}",
        "GET events (first page of 100)": f"/api/enrichment/events/{name}?limit=100",
        "GET events (a page deep in the cursor)": f"/api/enrichment/events/{name}?limit=100"
        f"&after={deep}",
        "GET reviews (review queue, 50)": f"/api/enrichment/reviews/{name}?limit=50",
        "GET backlog (20)": f"/api/enrichment/backlog/{name}?limit=20",
    }
    for noisy in ("httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    out = []
    # Not entered as a context: the app's lifespan only announces settings, and its shutdown
    # through the test portal was seen to hang after many requests.
    client = TestClient(app, headers=headers)
    for label, path in paths.items():

        def call(path: str = path) -> None:
            response = client.get(path)
            if response.status_code != 200:
                raise RuntimeError(f"{path}: {response.status_code} {response.text[:200]}")

        out.append(timed(label, ROUTE_TARGET_S, call, RUNS))
    return out


def _deep_cursor(services: Services) -> str:
    """The cursor of the tenant's event at 90 % of its history (what a client catching up
    sends), in the route's own format."""
    from enrichment.delivery.events import Cursor

    tx, event_id = sql(
        services,
        "SELECT tx, id FROM outbox_events WHERE tenant_id = :t ORDER BY tx, id "
        "OFFSET (SELECT count(*) * 9 / 10 FROM outbox_events WHERE tenant_id = :t) LIMIT 1",
        t=BIG,
    )[0]
    return str(Cursor(tx, event_id))


def bench_p3s(services: Services, opts: Options) -> list[Row]:
    n, tenants = opts.p3_records, opts.p3_tenants
    sizes_file = opts.out_dir / "p3s-sizes.json"
    if opts.p3s_reuse and _records(services) == n:
        took = json.loads(sizes_file.read_text())["load_s"] if sizes_file.exists() else {}
        repaired = seeding.repair_indexes(services)
        if repaired:
            took["indexes_repaired"] = repaired
        log.info("bench.p3s.reused", records=n, load_s=took)
        return measure_all(services, opts, took)
    reset_data(services)
    log.info("bench.p3s.seeding", records=n, tenants=tenants)
    took = seeding.seed(services, n, tenants)
    took["vacuum_analyze"] = seeding.vacuum_analyze(services)
    return measure_all(services, opts, took)


def measure_all(services: Services, opts: Options, took: dict[str, float]) -> list[Row]:
    """Everything after the load (also run on its own against a loaded database)."""
    size = seeding.sizes(services)
    measured = [*db_calls(services), *route_calls(services)]
    path = opts.out_dir / "p3s-explain.txt"
    path.write_text(plans(services, measured))
    per = seeding.per_row(size)
    (opts.out_dir / "p3s-sizes.json").write_text(
        json.dumps({"load_s": took, "sizes": size, "bytes_per": per}, indent=2)
    )
    print(f"EXPLAIN (ANALYZE, BUFFERS) of every statement: {path}", flush=True)
    load = sum(took.values())
    rows = [_row(m, opts) for m in measured]
    rows.append(
        Row(
            f"P3s size at {opts.p3_records:,} records",
            f"database {size['database'] / MB:,.0f} MB; bytes per record {per['record']:,.0f}, "
            f"attempt {per['attempt']:,.0f}, event {per['event']:,.0f}",
            f"load {load:,.0f} s",
            "-",
            "info",
            None,
            {"load_s": took, "bytes_per": per, "database": size["database"]},
        )
    )
    return rows


def _row(m: Measured, opts: Options) -> Row:
    ok = None if m.name.startswith("monitor run, the first") else m.p95_s < m.target_s
    return Row(
        f"P3s {m.name} ({opts.p3_records:,} records, {opts.p3_tenants} tenants)",
        f"median {m.median_s * 1000:,.1f} ms, p95 {m.p95_s * 1000:,.1f} ms ({len(m.times_s)} runs)",
        f"{m.target_s * 1000:,.0f} ms",
        f"{m.p95_s / m.target_s:.2f}",
        f"p95 < {m.target_s * 1000:,.0f} ms",
        ok,
        {"median_s": m.median_s, "p95_s": m.p95_s, "times_s": m.times_s},
    )


def plans(services: Services, measured: list[Measured]) -> str:
    """Every captured statement's plan; for the monitor run over all tenants, only those of
    its first tenant (the others repeat them)."""
    chunks = []
    for m in measured:
        statements = m.statements
        if m.name.startswith("monitor run"):
            statements = statements[: len(statements) // max(1, _tenant_count(services))]
        chunks.append(f"==== {m.name}: median {m.median_s * 1000:,.1f} ms")
        for c in statements:
            try:
                plan = explain(services, c)
            except Exception as exc:  # noqa: BLE001 - a statement EXPLAIN refuses is noted
                plan = f"(no plan: {type(exc).__name__})"
            chunks.append(f"-- {c.seconds * 1000:,.1f} ms\n{c.statement}\n{plan}\n")
    return "\n".join(chunks)


def _records(services: Services) -> int:
    return sql(services, "SELECT count(*) FROM exception_records")[0][0]


def _tenant_count(services: Services) -> int:
    return sql(services, "SELECT count(*) FROM tenants")[0][0]
