"""P4 memory: worker RSS (main + children, from /proc) while beat sweeps `--p4-records`
records that wait in backoff beyond the sweep horizon.
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from enrichment.tooling.bench.common import (
    MB,
    Options,
    Row,
    Services,
    reset_data,
    seed_records,
    seed_tenant,
    sql,
)
from enrichment.tooling.bench.fleet import start_beat, start_fake, start_worker, tree_rss_bytes
from enrichment.tooling.processes import Proc, stop_all

log = structlog.get_logger(__name__)


def bench_p4(services: Services, opts: Options) -> list[Row]:
    reset_data(services)
    tenant_id = seed_tenant(services)
    # Due 1 to 2 hours from now: far beyond the 6-minute sweep horizon.
    seed_records(services, tenant_id, opts.p4_records, prefix="p4-", delay_s=3600.0, spread_s=3600)
    measured = _measure(services, opts)
    log.info(
        "bench.p4.memory",
        idle_mb=round(measured["idle"] / MB),
        max_mb=round(max(measured["samples"]) / MB),
        sweeps=measured["sweeps"],
        monitors=measured["monitors"],
    )
    claimed = sql(services, "SELECT count(*) FROM exception_records WHERE lease_token IS NOT NULL")
    return [_p4_row(opts, measured, claimed[0][0])]


def _measure(services: Services, opts: Options) -> dict[str, Any]:
    """Idle RSS of one worker, then RSS samples while beat runs; sweeps and monitor runs seen."""
    fake, url = start_fake(services, 0.0)
    procs = [fake]
    name = "p4-" + opts.p4_pool.replace(":", "-")
    # Beat's `expires` equals the interval: under load a 1 s expiry discards most sweeps.
    beat_env = {"ENRICHMENT_SWEEP_INTERVAL_S": "5", "ENRICHMENT_MONITOR_INTERVAL_S": "15"}
    try:
        worker = start_worker(services, opts.p4_pool, name, ANTHROPIC_BASE_URL=url, **beat_env)
        procs.append(worker)
        time.sleep(3)
        idle = tree_rss_bytes(worker.pid)
        samples = _sample_rss(services, worker, opts.p4_duration_s, beat_env)
        sweeps = worker.text().count('"sweep.claimed"')
        monitors = worker.text().count('"monitor.done"')
    finally:
        stop_all(procs)
    return {"idle": idle, "samples": samples, "sweeps": sweeps, "monitors": monitors}


def _sample_rss(services: Services, worker: Proc, duration_s: float, env: dict) -> list[int]:
    samples = []
    beat = start_beat(services, **env)
    try:
        deadline = time.monotonic() + duration_s
        while time.monotonic() < deadline:
            samples.append(tree_rss_bytes(worker.pid))
            time.sleep(1.0)
    finally:
        beat.stop()
    return samples


def _p4_row(opts: Options, measured: dict[str, Any], claimed: int) -> Row:
    idle, samples = measured["idle"], measured["samples"]
    sweeps, monitors = measured["sweeps"], measured["monitors"]
    growth = (max(samples) - idle) / MB
    late = (samples[-1] - samples[len(samples) // 2]) / MB
    return Row(
        f"P4 worker RSS, {opts.p4_records:,} in backoff, {sweeps} sweeps + {monitors} monitor "
        f"runs in {opts.p4_duration_s:g} s ({opts.p4_pool})",
        f"+{growth:.1f} MB (2nd half {late:+.1f} MB)",
        f"idle {idle / MB:.0f} MB",
        "-",
        "<= +50 MB",
        growth <= 50 and claimed == 0 and sweeps > 0,
        {
            "idle_mb": idle / MB,
            "max_mb": max(samples) / MB,
            "growth_mb": growth,
            "second_half_mb": late,
            "sweeps": sweeps,
            "monitors": monitors,
            "claimed": claimed,
        },
    )
