"""Benchmarks on local Redis and PostgreSQL: `enrichment bench` (`make bench`) prints a table.

P1 pipeline overhead (`p1_pipeline`): records/min end to end against a bare chain of three
   no-op tasks (`bench.noop`, in `workers/bench_chain.py`) run by the same worker process.
P2 latency-bound throughput (`p2_latency`): records/min with the fake server at
   `--p2-latency-s` per call, for several worker pools, against the bound C/(3*L); a pool
   ending in "@rabbitmq" runs on the local RabbitMQ (vhost named like the database).
P3 query cost (`p3_queries`): the sweep's claim and the monitor's per-tenant queries on
   `--p3-records` records, timed, with EXPLAIN (ANALYZE, BUFFERS) of the very SQL sent.
P3s P3 at scale (`p3_scale`): `--p3-records` records with their history (3 attempts and an
   outbox event each), loaded in PostgreSQL; the claim, a monitor run over all tenants and
   the API's listing routes (median, p95, EXPLAIN), and the bytes per record, attempt, event.
P4 memory (`p4_memory`): worker RSS while beat sweeps `--p4-records` records in backoff.
P5 AI cost (`p5_cost`): dollars per 1,000 records, interactive against Message Batches.
P6 fairness (`p6_fairness`): small tenants behind a big one's backlog, the real fleet.
P7 priority (`p7_priority`): critical records behind a backlog of low ones, the real fleet.
P8 prompt builder (`p8_prompt`): one stage's prompt and record check on the worst-case record
   ingestion accepts, CPU time in this process.
P9 API under a flood (`p9_api`): a quiet tenant's p50/p99 latency while another floods the API
   served by uvicorn, and the flooder's share of 429s.
P10 the cheap model first (`p10_cascade`): cost per 1,000 records and agreement with the
   labels, the cascade against the LLM alone, on the labelled sets through the fake.
P11 orders (`p11_orders`): generated order timelines replayed through the API into the fleet;
   precision and recall of the problems raised against the tenant's later exceptions, and
   the median lead time.
P12 the pruner (`p12_pruner`): rows removed per second by `enrichment prune`, and the claim's
   latency while it runs against the claim alone, in the same run.

Isolation: database `bench` (dropped, created and migrated with the real migrations) and Redis
db 8 (flushed); everything on 127.0.0.1. Every wait is bounded in time and every run in count.
The no-op tasks are registered with `shared_task`, and the worker is started with
`-A workers -I workers.bench_chain`: one app, one worker, identical settings for both chains.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import structlog

from enrichment.tooling.bench.common import Options, Row, Services, format_table, machine, prepare
from enrichment.tooling.bench.fleet import serve_fake
from enrichment.tooling.bench.p1_pipeline import bench_p1
from enrichment.tooling.bench.p2_latency import bench_p2
from enrichment.tooling.bench.p3_queries import bench_p3
from enrichment.tooling.bench.p3_scale import bench_p3s
from enrichment.tooling.bench.p4_memory import bench_p4
from enrichment.tooling.bench.p5_cost import bench_p5
from enrichment.tooling.bench.p6_fairness import bench_p6
from enrichment.tooling.bench.p7_priority import bench_p7
from enrichment.tooling.bench.p8_prompt import bench_p8
from enrichment.tooling.bench.p9_api import bench_p9
from enrichment.tooling.bench.p10_cascade import bench_p10
from enrichment.tooling.bench.p11_orders import bench_p11
from enrichment.tooling.bench.p12_pruner import bench_p12
from enrichment.tooling.processes import ROOT

log = structlog.get_logger(__name__)

RUNNERS: dict[str, Callable[[Services, Options], list[Row]]] = {
    "p1": bench_p1,
    "p2": bench_p2,
    "p3": bench_p3,
    "p3s": bench_p3s,
    "p4": bench_p4,
    "p5": bench_p5,
    "p6": bench_p6,
    "p7": bench_p7,
    "p8": bench_p8,
    "p9": bench_p9,
    "p10": bench_p10,
    "p11": bench_p11,
    "p12": bench_p12,
}


def parse_args(argv: list[str]) -> Options:
    p = argparse.ArgumentParser(prog="enrichment bench", description=__doc__.split("\n")[0])
    p.add_argument(
        "--only",
        default=",".join(n for n in RUNNERS if n not in ("p3s", "p12")),
        help="comma list of p1..p10, p3s, p12 (all but p3s and p12: they load records with"
        " history, 1M and 200,000)",
    )
    p.add_argument("--scale", type=float, default=1.0, help="multiplies every record count")
    p.add_argument("--db-name", default="bench", help="PostgreSQL database, dropped (bench)")
    p.add_argument(
        "--redis-db",
        type=int,
        default=8,
        help="db number on the bench's own redis-server, flushed (8)",
    )
    p.add_argument("--p1-records", type=int, default=2000)
    p.add_argument("--p1-chains", type=int, default=2000)
    p.add_argument("--p1-pool", default="prefork:2", help="pool:concurrency (prefork:2)")
    p.add_argument(
        "--p2-pools",
        default="prefork:2,threads:75,threads:75x2,threads:100x2,gevent:75x2,threads:75x2@rabbitmq",
        help="pool:concurrency[xprocesses][@rabbitmq], comma-separated",
    )
    p.add_argument("--p2-latency-s", type=float, default=1.0)
    p.add_argument("--p2-db-pool", default="20:10", help="pool_size:max_overflow per process")
    p.add_argument("--p2-warmup-s", type=float, default=10.0)
    p.add_argument("--p2-window-s", type=float, default=30.0)
    p.add_argument("--p3-records", "--records", type=int, default=1_000_000, help="P3, P3s")
    p.add_argument(
        "--p3-tenants", "--tenants", type=int, default=100, help="tenant 1 holds 40 %% (100)"
    )
    p.add_argument(
        "--p3s-reuse",
        action="store_true",
        help="P3s: keep --db-name as it is and skip the load if it holds --p3-records records",
    )
    p.add_argument("--p4-records", type=int, default=100_000)
    p.add_argument("--p4-pool", default="threads:75")
    p.add_argument("--p4-duration-s", type=float, default=60.0)
    p.add_argument("--p5-records", type=int, default=5_000)
    p.add_argument("--p5-pool", default="threads:20")
    p.add_argument("--p6-big", type=int, default=20_000, help="the big tenant's records")
    p.add_argument("--p6-small-tenants", type=int, default=5)
    p.add_argument("--p6-small", type=int, default=20, help="records per small tenant")
    p.add_argument("--p6-pool", default="prefork:2")
    p.add_argument("--p6-no-fifo", action="store_true", help="skip the FIFO baseline run")
    p.add_argument("--p7-low", type=int, default=5_000)
    p.add_argument("--p7-critical", type=int, default=50)
    p.add_argument("--p7-pool", default="prefork:2")
    p.add_argument("--p9-clients", type=int, default=8, help="the flooding tenant's clients")
    p.add_argument("--p9-duration-s", type=float, default=10.0, help="the flood's length (10)")
    p.add_argument("--p12-records", type=int, default=200_000, help="P12: records (200,000)")
    p.add_argument("--p12-pause-s", help="P12: ENRICHMENT_PRUNE_PAUSE_S (the default)")
    p.add_argument("--p11-orders", type=int, default=60, help="P11: order timelines (60)")
    p.add_argument("--p11-seed", type=int, default=7)
    p.add_argument("--p11-speed", type=float, default=3600.0, help="P11: replay speed (3600)")
    p.add_argument("--p11-pool", default="threads:4")
    p.add_argument("--timeout-s", type=float, default=1800.0, help="P5-P7 fleet bound (1800)")
    p.add_argument("--out-dir", default="var/bench", help="logs, plans, results.json")
    return _options(p.parse_args(argv))


def _options(a: argparse.Namespace) -> Options:
    def scaled(n: int) -> int:
        return max(1, int(n * a.scale))

    return Options(
        only=tuple(s.strip() for s in a.only.split(",") if s.strip()),
        scale=a.scale,
        db_name=a.db_name,
        redis_db=a.redis_db,
        p1_records=scaled(a.p1_records),
        p1_chains=scaled(a.p1_chains),
        p1_pool=a.p1_pool,
        p2_pools=tuple(s.strip() for s in a.p2_pools.split(",") if s.strip()),
        p2_latency_s=a.p2_latency_s,
        p2_db_pool=a.p2_db_pool,
        p2_warmup_s=a.p2_warmup_s,
        p2_window_s=a.p2_window_s,
        p3_records=scaled(a.p3_records),
        p4_records=scaled(a.p4_records),
        p4_pool=a.p4_pool,
        p4_duration_s=a.p4_duration_s,
        out_dir=(ROOT / a.out_dir).resolve(),
        p3_tenants=max(2, a.p3_tenants),
        p5_records=scaled(a.p5_records),
        p5_pool=a.p5_pool,
        p6_big=scaled(a.p6_big),
        p6_small_tenants=a.p6_small_tenants,
        p6_small=scaled(a.p6_small),
        p6_pool=a.p6_pool,
        p6_no_fifo=a.p6_no_fifo,
        p7_low=scaled(a.p7_low),
        p7_critical=scaled(a.p7_critical),
        p7_pool=a.p7_pool,
        timeout_s=a.timeout_s,
        p9_clients=max(1, a.p9_clients),
        p9_duration_s=a.p9_duration_s,
        p11_orders=scaled(a.p11_orders),
        p11_seed=a.p11_seed,
        p11_speed=a.p11_speed,
        p11_pool=a.p11_pool,
        p12_records=scaled(a.p12_records),
        p12_pause_s=a.p12_pause_s,
        p3s_reuse=a.p3s_reuse,
    )


def main(argv: list[str] | None = None) -> int:
    from enrichment.core.logs import configure_logging

    # A leading "--" (older docs wrote `enrichment bench -- --only p1`) is accepted.
    argv = list(argv or [])
    if argv[:1] == ["serve-fake"]:
        return serve_fake(int(argv[1]), float(argv[2]))
    opts = parse_args(argv[1:] if argv[:1] == ["--"] else argv)
    configure_logging("console")
    unknown = set(opts.only) - set(RUNNERS)
    if unknown:
        print(f"unknown benchmark(s) {sorted(unknown)}; choose from {sorted(RUNNERS)}")
        return 2
    # A TERM (timeout, kill) stops the children too: the `finally` blocks must run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return _run(opts)


def _run(opts: Options) -> int:
    """Every benchmark of `opts.only` in order, then the table and results.json."""
    started = time.perf_counter()
    info = machine()
    log.info("bench.start", only=",".join(opts.only), scale=opts.scale, **info)
    services = prepare(opts)
    rows: list[Row] = []
    for name in opts.only:
        t0 = time.perf_counter()
        rows.extend(RUNNERS[name](services, opts))
        log.info("bench.done", benchmark=name, seconds=round(time.perf_counter() - t0, 1))
    elapsed = time.perf_counter() - started
    print(
        f"\nmachine: {info['nproc']} CPUs, {info['cpu']}, {info['mem_gib']} GiB; "
        f"elapsed {elapsed:.0f} s\n"
    )
    print(format_table(rows), flush=True)
    _save(opts.out_dir / "results.json", rows, info, elapsed)
    return 0 if all(r.ok is not False for r in rows) else 1


def _save(path: Path, rows: list[Row], info: dict[str, Any], elapsed: float) -> None:
    payload = {"machine": info, "elapsed_s": elapsed, "rows": [asdict(r) for r in rows]}
    path.write_text(json.dumps(payload, indent=2, default=str))
