"""P2 latency-bound throughput: records/min with the fake server at `--p2-latency-s` per call,
for several worker pools, against the bound C/(3*L) (C calls in flight, L latency).

A pool spec ending in "@rabbitmq" (`threads:75x2@rabbitmq`) runs its workers on the local
RabbitMQ instead of Redis, in a vhost named like the bench database (made if missing, its
queues purged); everything else is the same.
"""

from __future__ import annotations

import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import structlog

from enrichment.tooling.bench.common import (
    HOST,
    MB,
    Options,
    Row,
    Services,
    attempt_outcomes,
    reset_data,
    seed_records,
    seed_tenant,
    sql,
)
from enrichment.tooling.bench.fleet import (
    calls_in_flight,
    parse_pool,
    send_sweep,
    start_fake,
    start_worker,
    tree_rss_bytes,
)
from enrichment.tooling.drill import rabbitmq
from enrichment.tooling.processes import Proc, stop_all
from workers import queues

log = structlog.get_logger(__name__)


def fake_capacity(url: str, concurrency: int, latency_s: float) -> tuple[float, int]:
    """(answered calls per second, failed calls) with `concurrency` calls in flight."""
    body = json.dumps(
        {
            "model": "claude-haiku-4-5",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": "ping"}],
        }
    ).encode()

    def call(_i: int) -> bool:
        req = urllib.request.Request(
            f"{url}/v1/messages",
            data=body,
            method="POST",
            headers={"x-api-key": "bench-key", "content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=latency_s * 20 + 10) as resp:
                resp.read()
        except OSError:
            return False
        return True

    n = concurrency * 3
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        failed = sum(not ok for ok in pool.map(call, range(n)))
    return (n - failed) / (time.perf_counter() - started), failed


def completed_stages(services: Services) -> int:
    rows = sql(services, "SELECT count(*) FROM enrichment_attempts WHERE outcome = 'completed'")
    return rows[0][0]


def split_spec(spec: str) -> tuple[str, str]:
    """ "threads:75x2@rabbitmq" -> ("threads:75x2", "rabbitmq"); no suffix: Redis."""
    pool, _, broker = spec.partition("@")
    return pool, broker or "redis"


def on_broker(services: Services, opts: Options, broker: str) -> Services:
    """`services` with the pool's broker: Redis as prepared, or a purged RabbitMQ vhost."""
    if broker == "redis":
        return services
    if broker != "rabbitmq":
        raise ValueError(f"P2 pool broker {broker!r}: choose @rabbitmq or nothing (Redis)")
    url = f"amqp://guest:guest@{HOST}:5672/{opts.db_name}"
    rabbitmq.start()
    rabbitmq.ensure_vhost(url)
    queues.purge(url)
    return replace(services, broker_url=url)


def p2_one(services: Services, opts: Options, spec: str, url: str) -> dict[str, Any]:
    """One pool: seed enough records, sweep, count completed stages over a steady window.

    Stages, not finished records, are counted (records = stages / 3): the queue is FIFO, so
    every analyze runs before the first classify and records finish in a burst at the end.
    The one sweep claims every seeded record (its batch floor is raised to n), as a fleet
    behind a backlog would over a few sweeps.
    """
    pool_spec, broker = split_spec(spec)
    reset_data(services)
    services = on_broker(services, opts, broker)
    bound_per_s = calls_in_flight(pool_spec) / (3 * opts.p2_latency_s)
    n = int(bound_per_s * (opts.p2_warmup_s + opts.p2_window_s) * 1.3)
    n += calls_in_flight(pool_spec)
    tenant_id = seed_tenant(services)
    seed_records(services, tenant_id, n, prefix="p2-")
    procs: list[Proc] = []
    try:
        _start_nodes(procs, services, opts, pool_spec, url, n)
        send_sweep(services.broker_url)
        time.sleep(opts.p2_warmup_s)
        first, t0 = completed_stages(services), time.perf_counter()
        log.info("bench.p2.window", pool=spec, seconds=opts.p2_window_s)
        time.sleep(opts.p2_window_s)
        last, t1 = completed_stages(services), time.perf_counter()
        rss = sum(tree_rss_bytes(p.pid) for p in procs)
    finally:
        stop_all(procs)
    rate = (last - first) / 3 / (t1 - t0)
    return _p2_result(services, spec, rate, bound_per_s, rss, n)


def _start_nodes(
    procs: list[Proc], services: Services, opts: Options, spec: str, url: str, n: int
) -> None:
    """The worker processes of `spec`, appended to `procs` one by one (so all get stopped)."""
    pool, concurrency, nodes = parse_pool(spec)
    name = "p2-" + spec.replace(":", "-")
    size, _, overflow = opts.p2_db_pool.partition(":")
    env = {
        "ANTHROPIC_BASE_URL": url,
        "ENRICHMENT_DB_POOL_SIZE": size,
        "ENRICHMENT_DB_MAX_OVERFLOW": overflow or "0",
        "ENRICHMENT_SWEEP_MIN_BATCH": str(n),
        "ENRICHMENT_SWEEP_BATCH_SIZE": str(n),
    }
    for i in range(nodes):
        procs.append(start_worker(services, f"{pool}:{concurrency}", f"{name}-{i}", **env))


def _p2_result(
    services: Services, spec: str, rate: float, bound_per_s: float, rss: int, n: int
) -> dict[str, Any]:
    outcomes = attempt_outcomes(services)
    log.info(
        "bench.p2.pool",
        pool=spec,
        records_per_min=round(rate * 60),
        bound_per_min=round(bound_per_s * 60),
        rss_mb=round(rss / MB),
        outcomes=outcomes,
    )
    return {
        "pool": spec,
        "records_per_s": rate,
        "bound_per_s": bound_per_s,
        "rss_mb": rss / MB,
        "outcomes": outcomes,
        "seeded": n,
    }


def bench_p2(services: Services, opts: Options) -> list[Row]:
    fake, url = start_fake(services, opts.p2_latency_s)
    try:
        rows = [_capacity_row(url, opts)]
        for spec in opts.p2_pools:
            if not _pool_available(spec):
                log.warning("bench.p2.skipped", pool=spec, reason="gevent is not installed")
                rows.append(Row(f"P2 {spec}", "skipped: not installed", "-", "-", "-", None))
                continue
            rows.append(_p2_row(p2_one(services, opts, spec, url), opts))
    finally:
        fake.stop()
    return rows


def _capacity_row(url: str, opts: Options) -> Row:
    """The fake server alone at the largest in-flight count: it must not be the bottleneck."""
    top = max(calls_in_flight(split_spec(s)[0]) for s in opts.p2_pools)
    capacity, failed = fake_capacity(url, top, opts.p2_latency_s)
    log.info("bench.p2.fake_capacity", in_flight=top, calls_per_s=round(capacity, 1), failed=failed)
    return Row(
        f"P2 fake server alone, {top} calls in flight at {opts.p2_latency_s:g} s",
        f"{capacity:.1f} calls/s, {failed} failed",
        f"bound {top / opts.p2_latency_s:.0f}/s",
        f"{capacity * opts.p2_latency_s / top:.2f}",
        "not the bottleneck",
        None,
        {"calls_per_s": capacity, "failed": failed},
    )


def _pool_available(spec: str) -> bool:
    """gevent is not a project dependency (`pip install gevent` to measure it)."""
    import importlib.util

    pool = parse_pool(split_spec(spec)[0])[0]
    return pool != "gevent" or importlib.util.find_spec("gevent") is not None


def _p2_row(r: dict[str, Any], opts: Options) -> Row:
    ratio = r["records_per_s"] / r["bound_per_s"]
    per_min = r["records_per_s"] * 60
    ok = ratio >= 0.8 and per_min >= 2000 and "failed" not in r["outcomes"]
    pool, broker = split_spec(r["pool"])
    where = " on RabbitMQ" if broker == "rabbitmq" else ""
    return Row(
        f"P2 AI at {opts.p2_latency_s:g} s, {pool}{where} (RSS {r['rss_mb']:.0f} MB)",
        f"{per_min:,.0f} rec/min",
        f"C/(3L) = {r['bound_per_s'] * 60:,.0f}/min",
        f"{ratio:.2f}",
        ">= 0.80 and >= 2,000/min",
        ok,
        r,
    )
