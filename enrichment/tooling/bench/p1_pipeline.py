"""P1 pipeline overhead: records/min end to end (sweep -> chain -> three stages -> database)
with the fake Anthropic server at zero latency, against a bare chain of three no-op tasks
(`bench.noop`, in `workers/bench_chain.py`) run by the same worker process in the same run,
and the CPU each process spent per record (worker, fake server, PostgreSQL, Redis).

An info row: its old target (0.6x the bare chain) was ill-posed. The bare chain has no
database and no SDK, and on 2 cores the fake shares the CPU with the fleet; the CPU per
record is what says where the time goes.
"""

from __future__ import annotations

import time

import structlog

from enrichment.tooling.bench.common import (
    Options,
    Row,
    Services,
    attempt_outcomes,
    finished_count,
    reset_data,
    seed_records,
    seed_tenant,
)
from enrichment.tooling.bench.fleet import (
    cpu_s,
    process_groups,
    send_sweep,
    start_fake,
    start_worker,
)
from enrichment.tooling.processes import stop_all, wait_for

log = structlog.get_logger(__name__)


def run_noop_chains(services: Services, n: int, *, timeout_s: float) -> float:
    """Enqueue n bare chains and wait until all ran; chains per second (enqueue included)."""
    import redis

    # Celery code lives in workers/; imported here, after prepare() set the broker URL.
    from workers.bench_chain import DONE_KEY, send_noop_chains

    client = redis.Redis.from_url(services.broker_url)
    client.delete(DONE_KEY)
    started = time.perf_counter()
    send_noop_chains(n)
    wait_for(
        lambda: int(client.get(DONE_KEY) or 0) >= n,
        timeout_s=timeout_s,
        what=f"{n} no-op chains",
        poll_s=0.05,
    )
    elapsed = time.perf_counter() - started
    client.close()
    return n / elapsed


def run_pipeline(services: Services, tenant_id: int, n: int, *, timeout_s: float) -> float:
    """Seed n due records, send one sweep, wait until all are enriched; records per second."""
    before = finished_count(services)
    seed_records(services, tenant_id, n, prefix=f"p{time.time_ns()}-")
    started = time.perf_counter()
    send_sweep()
    wait_for(
        lambda: finished_count(services) >= before + n,
        timeout_s=timeout_s,
        what=f"{n} records enriched",
        poll_s=0.1,
    )
    return n / (time.perf_counter() - started)


def bench_p1(services: Services, opts: Options) -> list[Row]:
    reset_data(services)
    fake, url = start_fake(services, 0.0)
    procs = [fake]
    try:
        worker = start_worker(services, opts.p1_pool, "p1", ANTHROPIC_BASE_URL=url)
        procs.append(worker)
        tenant_id = seed_tenant(services)
        run_noop_chains(services, 100, timeout_s=60)  # warm-up: imports, connections
        run_pipeline(services, tenant_id, 100, timeout_s=120)
        log.info("bench.p1.warm", pool=opts.p1_pool)
        bare = run_noop_chains(services, opts.p1_chains, timeout_s=300)
        log.info("bench.p1.bare_chain", chains_per_s=round(bare, 1))
        groups = process_groups(worker=worker.pid, fake=fake.pid)
        before = {name: cpu_s(pids) for name, pids in groups.items()}
        rate = run_pipeline(services, tenant_id, opts.p1_records, timeout_s=600)
        cpu_ms = {
            name: (cpu_s(pids) - before[name]) * 1000 / opts.p1_records
            for name, pids in groups.items()
        }
        log.info("bench.p1.pipeline", records_per_s=round(rate, 1), cpu_ms_per_record=cpu_ms)
        outcomes = attempt_outcomes(services)
    finally:
        stop_all(procs)
    return [_p1_row(opts, rate, bare, outcomes, cpu_ms)]


def _p1_row(
    opts: Options, rate: float, bare: float, outcomes: dict[str, int], cpu_ms: dict[str, float]
) -> Row:
    ratio = rate / bare
    split = ", ".join(f"{name} {ms:.1f}" for name, ms in cpu_ms.items())
    return Row(
        f"P1 pipeline, fake AI at 0 s ({opts.p1_pool}, {opts.p1_records} records)",
        f"{rate * 60:,.0f} rec/min ({rate:.1f}/s); CPU ms/record: {split}",
        f"bare 3-task chain {bare * 60:,.0f}/min ({bare:.1f}/s)",
        f"{ratio:.2f}x",
        "info",
        None,
        {"records_per_s": rate, "bare_chains_per_s": bare, "outcomes": outcomes, "cpu_ms": cpu_ms},
    )
