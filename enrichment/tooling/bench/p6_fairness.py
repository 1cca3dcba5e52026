"""P6 fairness: one tenant with `--p6-big` due records ingested first, then
`--p6-small-tenants` tenants with `--p6-small` records each, all worked off by the real fleet
(workers and beat, the local provider).

Fairness: when each small tenant's last record became terminal (enriched or escalated), the
share of the big tenant's records already terminal. Target: every small tenant done before
the big one is 10 % done. Throughput: records/min from the first sweep to the last terminal
record, within 10 % of FIFO's in the same run. FIFO is the fleet as it was before fair
scheduling (FIFO_ENV): the claim in due order across tenants, and every sweep claiming up to
5,000 records (the old 10 claims of 500) whatever the fleet's throughput, so the broker
queue runs deep. `--p6-no-fifo` skips that run. Every time comes from the records' own
timestamps, not polling.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import structlog

from enrichment.tooling.bench.common import (
    Options,
    Row,
    Services,
    finished_count,
    reset_data,
    seed_records,
    seed_tenant,
    sql,
)
from enrichment.tooling.bench.fleet import parse_pool, send_sweep, start_beat, start_worker
from enrichment.tooling.processes import Proc, stop_all, wait_for

log = structlog.get_logger(__name__)

TERMINAL_AT = "coalesce(enriched_at, escalated_at)"
# Beat sweeps every 5 s: a 1 s expiry discards most sweeps on a loaded host (P4).
FLEET_ENV = {"ENRICHMENT_AI_PROVIDER": "local", "ENRICHMENT_SWEEP_INTERVAL_S": "5"}
FIFO_ENV = {
    "ENRICHMENT_CLAIM_ORDER": "fifo",
    "ENRICHMENT_SWEEP_BATCH_SIZE": "5000",
    "ENRICHMENT_SWEEP_MIN_BATCH": "5000",
}


def run_fleet(services: Services, pool: str, total: int, timeout_s: float, **env: str) -> datetime:
    """Workers of `pool` and a beat until `total` records are terminal; the start (DB clock)."""
    procs: list[Proc] = []
    pool_name, concurrency, nodes = parse_pool(pool)
    fleet_env = {**FLEET_ENV, **env}
    try:
        for i in range(nodes):
            name = f"fair-{pool_name}-{i}"
            procs.append(start_worker(services, f"{pool_name}:{concurrency}", name, **fleet_env))
        started = sql(services, "SELECT now()")[0][0]
        send_sweep()
        procs.append(start_beat(services, **fleet_env))
        wait_for(
            lambda: finished_count(services) >= total,
            timeout_s=timeout_s,
            what=f"{total} records terminal",
            poll_s=1.0,
        )
    finally:
        stop_all(procs)
    return started


def last_terminal(services: Services, group: str) -> dict[Any, datetime]:
    """Per group (a SQL expression), when its last record became terminal."""
    rows = sql(
        services, f"SELECT {group}, max({TERMINAL_AT}) FROM exception_records GROUP BY {group}"
    )
    return dict(rows)


def terminal_by(services: Services, group: str, key: Any, at: datetime) -> int:
    """How many of the group's records were terminal at `at`."""
    rows = sql(
        services,
        f"SELECT count(*) FROM exception_records WHERE {group} = :key AND {TERMINAL_AT} <= :at",
        key=key,
        at=at,
    )
    return rows[0][0]


def per_min(n: int, started: datetime, ended: datetime) -> float:
    return n * 60.0 / max((ended - started).total_seconds(), 1e-9)


def p6_once(services: Services, opts: Options, **env: str) -> dict[str, Any]:
    """Seed the big tenant, then the small ones; run the fleet; measure from the timestamps."""
    reset_data(services)
    big = seed_tenant(services, "p6-big")
    seed_records(services, big, opts.p6_big, prefix="big-")
    time.sleep(0.01)  # the small tenants' records are due after every big one
    small = [seed_tenant(services, f"p6-small-{i}") for i in range(opts.p6_small_tenants)]
    for tid in small:
        seed_records(services, tid, opts.p6_small, prefix=f"s{tid}-")
    total = opts.p6_big + opts.p6_small * len(small)
    started = run_fleet(services, opts.p6_pool, total, opts.timeout_s, **env)
    done = last_terminal(services, "tenant_id")
    worst = max(done[tid] for tid in small)
    big_done = terminal_by(services, "tenant_id", big, worst)
    result = {
        "claim": env.get("ENRICHMENT_CLAIM_ORDER", "fair"),
        "big_done_pct": 100.0 * big_done / opts.p6_big,
        "small_done_after_s": (worst - started).total_seconds(),
        "records_per_min": per_min(total, started, max(done.values())),
        "total": total,
    }
    log.info("bench.p6.run", env=env or None, **result)
    return result


def bench_p6(services: Services, opts: Options) -> list[Row]:
    fair = p6_once(services, opts)
    fifo = None if opts.p6_no_fifo else p6_once(services, opts, **FIFO_ENV)
    return [_fair_row(opts, fair), _throughput_row(opts, fair, fifo)]


def _fair_row(opts: Options, r: dict[str, Any]) -> Row:
    return Row(
        f"P6 fairness: {opts.p6_small_tenants} x {opts.p6_small} records behind "
        f"{opts.p6_big:,} ({opts.p6_pool}, claim {r['claim']})",
        f"big tenant {r['big_done_pct']:.1f} % done when the last small tenant finished "
        f"({r['small_done_after_s']:.1f} s)",
        "-",
        f"{r['big_done_pct'] / 100:.3f}",
        "< 10 %",
        r["big_done_pct"] < 10.0,
        r,
    )


def _throughput_row(opts: Options, fair: dict[str, Any], fifo: dict[str, Any] | None) -> Row:
    figure = f"{fair['records_per_min']:,.0f} rec/min"
    if fifo is None:
        return Row(
            f"P6 throughput, {fair['total']:,} records (claim {fair['claim']})",
            figure,
            "FIFO not measured (--p6-no-fifo)",
            "-",
            ">= 0.90x FIFO",
            None,
            fair,
        )
    ratio = fair["records_per_min"] / fifo["records_per_min"]
    return Row(
        f"P6 throughput, {fair['total']:,} records (claim {fair['claim']})",
        figure,
        f"FIFO {fifo['records_per_min']:,.0f} rec/min",
        f"{ratio:.2f}x",
        ">= 0.90x FIFO",
        ratio >= 0.9,
        {"fair": fair, "fifo": fifo},
    )
