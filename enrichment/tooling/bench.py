"""Benchmarks on local Redis and PostgreSQL: `enrichment bench` (`make bench`) prints a table.

P1 pipeline overhead: records/min end to end (sweep -> chain -> three stages -> database) with
   the fake Anthropic server at zero latency, against a bare chain of three no-op tasks
   (`bench.noop`, defined here) run by the same worker process in the same run.
P2 latency-bound throughput: records/min with the fake server at `--p2-latency-s` per call,
   for several worker pools, against the bound C/(3*L) (C calls in flight, L latency).
P3 query cost: the sweep's claim (enrichment.core.selection.claim_due) and the monitor's per-tenant
   queries on `--p3-records` records, timed, with EXPLAIN (ANALYZE, BUFFERS) of the very SQL
   the code sent (captured from the engine, with its real parameters).
P4 memory: worker RSS (main + children, from /proc) while beat sweeps `--p4-records` records
   that wait in backoff beyond the sweep horizon.

Isolation: database `bench` (dropped, created and migrated with the real migrations) and Redis
db 8 (flushed); everything on 127.0.0.1. Every wait is bounded in time and every run in count.
The no-op tasks are registered with `shared_task`, and the worker is started with
`-A workers -I enrichment.bench`: one app, one worker, identical settings for both chains.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import structlog
from celery import shared_task

log = structlog.get_logger(__name__)

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
PG_ADMIN_URL = f"postgresql+psycopg://{HOST}:5432/postgres"
DONE_KEY = "bench:noop:done"
NOTES = "Customer says the box arrived crushed and the mug inside is broken."
MB = 1024 * 1024


# --- the baseline: a bare chain of three no-op tasks ---------------------------------------

_redis_client: Any = None


@shared_task(name="bench.noop", ignore_result=True)
def noop(chain_id: int, last: bool = False) -> int:
    """One hop of the baseline chain; the last hop counts the chain as done (one INCR)."""
    if last:
        _counter().incr(DONE_KEY)
    return chain_id


def _counter() -> Any:
    global _redis_client
    if _redis_client is None:  # per process, after fork
        import redis

        from enrichment.core.settings import get_settings

        _redis_client = redis.Redis.from_url(get_settings().broker_url)
    return _redis_client


# --- options, results, the table -------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    only: tuple[str, ...]
    scale: float
    db_name: str
    redis_db: int
    p1_records: int
    p1_chains: int
    p1_pool: str
    p2_pools: tuple[str, ...]
    p2_latency_s: float
    p2_db_pool: str
    p2_warmup_s: float
    p2_window_s: float
    p3_records: int
    p4_records: int
    p4_pool: str
    p4_duration_s: float
    out_dir: Path


@dataclass
class Row:
    """One line of the final table. ratio = figure / reference; ok = the target is met."""

    benchmark: str
    figure: str
    reference: str
    ratio: str
    target: str
    ok: bool | None
    data: dict[str, Any] = field(default_factory=dict)


def parse_args(argv: list[str]) -> Options:
    p = argparse.ArgumentParser(prog="enrichment bench", description=__doc__.split("\n")[0])
    p.add_argument("--only", default="p1,p2,p3,p4", help="comma list of p1..p4 (all)")
    p.add_argument("--scale", type=float, default=1.0, help="multiplies every record count")
    p.add_argument("--db-name", default="bench", help="PostgreSQL database, dropped (bench)")
    p.add_argument("--redis-db", type=int, default=8, help="Redis db number, flushed (8)")
    p.add_argument("--p1-records", type=int, default=2000)
    p.add_argument("--p1-chains", type=int, default=2000)
    p.add_argument("--p1-pool", default="prefork:2", help="pool:concurrency (prefork:2)")
    p.add_argument(
        "--p2-pools", default="prefork:2,threads:75,threads:75x2,threads:100x2,gevent:75x2"
    )
    p.add_argument("--p2-latency-s", type=float, default=1.0)
    p.add_argument("--p2-db-pool", default="20:10", help="pool_size:max_overflow per process")
    p.add_argument("--p2-warmup-s", type=float, default=10.0)
    p.add_argument("--p2-window-s", type=float, default=30.0)
    p.add_argument("--p3-records", type=int, default=1_000_000)
    p.add_argument("--p4-records", type=int, default=100_000)
    p.add_argument("--p4-pool", default="threads:75")
    p.add_argument("--p4-duration-s", type=float, default=60.0)
    p.add_argument("--out-dir", default="var/bench", help="logs, plans, results.json")
    a = p.parse_args(argv)

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
    )


def format_table(rows: list[Row]) -> str:
    head = ("benchmark", "figure", "baseline/bound", "ratio", "target", "result")
    body = [(r.benchmark, r.figure, r.reference, r.ratio, r.target, _verdict(r.ok)) for r in rows]
    widths = [max(len(str(line[i])) for line in (head, *body)) for i in range(len(head))]
    lines = [
        " | ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True))
        for line in (head, *body)
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _verdict(ok: bool | None) -> str:
    return "info" if ok is None else "PASS" if ok else "FAIL"


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {"nproc": os.cpu_count(), "cpu": model, "mem_gib": round(mem_kb / 1024**2, 1)}


# --- services: the dedicated database and Redis db -------------------------------------------


@dataclass(frozen=True)
class Services:
    db_url: str
    broker_url: str
    out_dir: Path

    def env(self, **overrides: str) -> dict[str, str]:
        """Environment for a worker or beat: our services, the anthropic provider, JSON logs."""
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("ENRICHMENT_", "ANTHROPIC_"))
        }
        env.update(
            DATABASE_URL=self.db_url,
            CELERY_BROKER_URL=self.broker_url,
            ENRICHMENT_VAR_DIR=str(self.out_dir / "var"),
            ENRICHMENT_AI_PROVIDER="anthropic",
            ANTHROPIC_API_KEY="bench-key",
            ENRICHMENT_AI_RPM="0",
            ENRICHMENT_LOG_FORMAT="json",
        )
        env.update(overrides)
        return env


def prepare(opts: Options) -> Services:
    """Drop, create and migrate the bench database; flush the bench Redis db."""
    from sqlalchemy import create_engine, text

    from enrichment.core import db

    opts.out_dir.mkdir(parents=True, exist_ok=True)
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{opts.db_name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{opts.db_name}"'))
    admin.dispose()
    services = Services(
        db_url=f"postgresql+psycopg://{HOST}:5432/{opts.db_name}",
        broker_url=f"redis://{HOST}:6379/{opts.redis_db}",
        out_dir=opts.out_dir,
    )
    db.migrate(services.db_url)
    # This process enqueues sweeps and chains through the same app, on the same services.
    os.environ.update(services.env())
    from enrichment.core.settings import get_settings

    get_settings.cache_clear()
    log.info("bench.prepared", database=opts.db_name, redis=services.broker_url)
    return services


def reset_data(services: Services) -> None:
    """Empty every table and the Redis db: each benchmark starts from nothing."""
    import redis
    from sqlalchemy import text

    from enrichment.core import db
    from enrichment.core.models import Base

    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with db.get_engine(services.db_url).begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    client = redis.Redis.from_url(services.broker_url)
    client.flushdb()
    client.close()


def sql(services: Services, statement: str, **params: Any) -> Any:
    from sqlalchemy import text

    from enrichment.core import db

    with db.get_engine(services.db_url).begin() as conn:
        result = conn.execute(text(statement), params)
        return result.all() if result.returns_rows else []


_SEED_RECORDS = """
WITH o AS (
  INSERT INTO orders (tenant_id, external_id, payload, events, created_at)
  SELECT :tenant_id, :prefix || g, CAST(:payload AS jsonb), CAST(:events AS jsonb), now()
  FROM generate_series(1, :n) AS g
  RETURNING id, external_id
)
INSERT INTO exception_records (tenant_id, order_id, external_id, reason_code, severity, status,
  notes, ai_source, enrichment_state, enrichment_retry_count, next_attempt_at, created_at,
  updated_at)
SELECT :tenant_id, o.id, o.external_id, 'DAMAGE', 'high', 'OPEN', :notes, '{}', '{}', 0,
  now() + make_interval(secs => :delay_s + o.id % :spread_s), now(), now()
FROM o
"""
_ORDER = {
    "name": "#1001",
    "financial_status": "paid",
    "line_items": [{"sku": "SKU-1", "title": "Mug", "quantity": 1, "price": "9.50"}],
    "shipping_address": {"city": "Springfield", "zip": "12345", "country_code": "US"},
}
_EVENTS = [
    {
        "source": "carrier",
        "type": "damage_reported",
        "at": "2026-11-22T15:05:00Z",
        "detail": "parcel crushed, contents broken",
    }
]


def seed_tenant(services: Services, name: str = "bench-3pl") -> int:
    rows = sql(
        services,
        "INSERT INTO tenants (name, confidence_threshold, settings, created_at) "
        "VALUES (:name, 0.7, '{}', now()) RETURNING id",
        name=name,
    )
    return rows[0][0]


def seed_records(
    services: Services,
    tenant_id: int,
    n: int,
    *,
    prefix: str,
    delay_s: float = -1.0,
    spread_s: int = 1,
) -> None:
    """n orders + n records in two set-based statements; due at now + delay_s (+ spread)."""
    from sqlalchemy import text

    from enrichment.core import db

    with db.get_engine(services.db_url).begin() as conn:
        conn.execute(
            text(_SEED_RECORDS),
            dict(
                tenant_id=tenant_id,
                prefix=prefix,
                n=n,
                payload=json.dumps(_ORDER),
                events=json.dumps(_EVENTS),
                notes=NOTES,
                delay_s=delay_s,
                spread_s=spread_s,
            ),
        )


def finished_count(services: Services) -> int:
    rows = sql(
        services,
        "SELECT count(*) FROM exception_records "
        "WHERE enriched_at IS NOT NULL OR escalated_at IS NOT NULL",
    )
    return rows[0][0]


def attempt_outcomes(services: Services) -> dict[str, int]:
    rows = sql(services, "SELECT outcome, count(*) FROM enrichment_attempts GROUP BY outcome")
    return {outcome: count for outcome, count in rows}


# --- processes ------------------------------------------------------------------------------


class Proc:
    """A child process in its own process group, output to a log file, stopped at the end."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._out = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=30)
        self._out.close()


@contextmanager
def running(proc: Proc) -> Iterator[Proc]:
    try:
        yield proc
    finally:
        proc.stop()


def wait_until(cond: Callable[[], bool], *, timeout_s: float, what: str, poll_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(poll_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_fake(services: Services, latency_s: float) -> tuple[Proc, str]:
    """The fake Anthropic server in its own process (its GIL is not the bench's)."""
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "enrichment.tooling.bench",
        "serve-fake",
        str(port),
        str(latency_s),
    ]
    proc = Proc(args, services.env(), services.out_dir / f"fake-{latency_s:g}s.log")
    wait_until(lambda: "point the provider" in proc.text(), timeout_s=30, what="fake server")
    return proc, f"http://{HOST}:{port}"


def serve_fake(port: int, latency_s: float) -> int:
    """`fake_anthropic.serve` with a listen backlog of 1024 instead of socketserver's
    5: with ~100 connections opening at once the stock backlog resets some of them (measured:
    ConnectionResetError at 150 in flight), which would measure the fake, not the fleet."""
    from enrichment.tooling import fake_anthropic

    fake_anthropic._Server.request_queue_size = 1024
    fake_anthropic.serve(port=port, latency_s=latency_s)
    return 0


def parse_pool(spec: str) -> tuple[str, int, int]:
    """ "threads:75x2" -> ("threads", 75, 2): two worker processes of 75 threads each."""
    pool, _, rest = spec.partition(":")
    concurrency, _, nodes = rest.partition("x")
    return pool, int(concurrency or 2), int(nodes or 1)


def calls_in_flight(spec: str) -> int:
    _pool, concurrency, nodes = parse_pool(spec)
    return concurrency * nodes


def worker_args(pool: str, concurrency: int, name: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers",
        "worker",
        "-I",
        "enrichment.tooling.bench",
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        "-n",
        f"{name}@%h",
        "--without-mingle",
        "--without-gossip",
        "--loglevel=INFO",
    ]


def start_worker(services: Services, spec: str, name: str, **env: str) -> Proc:
    pool, concurrency, _nodes = parse_pool(spec)
    proc = Proc(
        worker_args(pool, concurrency, name),
        services.env(**env),
        services.out_dir / f"worker-{name}.log",
    )
    try:
        wait_until(
            lambda: " ready." in proc.text() or proc.popen.poll() is not None,
            timeout_s=60,
            what=f"worker {name}",
        )
    except TimeoutError:
        proc.stop()
        raise
    if proc.popen.poll() is not None:
        raise RuntimeError(f"worker {name} exited:\n{proc.text()[-2000:]}")
    return proc


def start_beat(services: Services, **env: str) -> Proc:
    schedule = services.out_dir / "beat-schedule"
    for old in services.out_dir.glob("beat-schedule*"):
        old.unlink()
    args = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers",
        "beat",
        "--loglevel=INFO",
        "-s",
        str(schedule),
    ]
    return Proc(args, services.env(**env), services.out_dir / "beat.log")


def tree_rss_bytes(pid: int) -> int:
    """VmRSS of `pid` and all its descendants, from /proc (0 for a process that is gone)."""
    total = 0
    for p in _descendants(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo.extend(int(c) for c in task.read_text().split())
            except OSError:
                continue
    return found


# --- P1: pipeline overhead ------------------------------------------------------------------


def send_sweep() -> None:
    from workers import tasks

    tasks.sweep.delay()


def run_noop_chains(services: Services, n: int, *, timeout_s: float) -> float:
    """Enqueue n bare chains and wait until all ran; chains per second (enqueue included)."""
    import redis
    from celery import chain

    client = redis.Redis.from_url(services.broker_url)
    client.delete(DONE_KEY)
    started = time.perf_counter()
    for i in range(n):
        chain(noop.si(i), noop.si(i), noop.si(i, last=True)).apply_async()
    wait_until(
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
    wait_until(
        lambda: finished_count(services) >= before + n,
        timeout_s=timeout_s,
        what=f"{n} records enriched",
        poll_s=0.1,
    )
    return n / (time.perf_counter() - started)


def bench_p1(services: Services, opts: Options) -> list[Row]:
    reset_data(services)
    fake, url = start_fake(services, 0.0)
    with running(fake), running(start_worker(services, opts.p1_pool, "p1", ANTHROPIC_BASE_URL=url)):
        tenant_id = seed_tenant(services)
        run_noop_chains(services, 100, timeout_s=60)  # warm-up: imports, connections
        run_pipeline(services, tenant_id, 100, timeout_s=120)
        log.info("bench.p1.warm", pool=opts.p1_pool)
        bare = run_noop_chains(services, opts.p1_chains, timeout_s=300)
        log.info("bench.p1.bare_chain", chains_per_s=round(bare, 1))
        rate = run_pipeline(services, tenant_id, opts.p1_records, timeout_s=600)
        log.info("bench.p1.pipeline", records_per_s=round(rate, 1))
        outcomes = attempt_outcomes(services)
    ratio = rate / bare
    return [
        Row(
            f"P1 pipeline, fake AI at 0 s ({opts.p1_pool}, {opts.p1_records} records)",
            f"{rate * 60:,.0f} rec/min ({rate:.1f}/s)",
            f"bare 3-task chain {bare * 60:,.0f}/min ({bare:.1f}/s)",
            f"{ratio:.2f}x",
            ">= 0.60x",
            ratio >= 0.6 and set(outcomes) == {"completed"},
            {"records_per_s": rate, "bare_chains_per_s": bare, "outcomes": outcomes},
        )
    ]


# --- P2: latency-bound throughput -----------------------------------------------------------


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


def p2_one(services: Services, opts: Options, spec: str, url: str) -> dict[str, Any]:
    """One pool: seed enough records, sweep, count completed stages over a steady window.

    Stages, not finished records, are counted (records = stages / 3): the queue is FIFO, so
    every analyze runs before the first classify and records finish in a burst at the end.
    """
    reset_data(services)
    pool, concurrency, nodes = parse_pool(spec)
    bound_per_s = calls_in_flight(spec) / (3 * opts.p2_latency_s)
    n = int(bound_per_s * (opts.p2_warmup_s + opts.p2_window_s) * 1.3) + calls_in_flight(spec)
    tenant_id = seed_tenant(services)
    seed_records(services, tenant_id, n, prefix="p2-")
    name = "p2-" + spec.replace(":", "-")
    size, _, overflow = opts.p2_db_pool.partition(":")
    env = {
        "ANTHROPIC_BASE_URL": url,
        "ENRICHMENT_DB_POOL_SIZE": size,
        "ENRICHMENT_DB_MAX_OVERFLOW": overflow or "0",
    }
    with ExitStack() as stack:
        procs = [
            stack.enter_context(
                running(start_worker(services, f"{pool}:{concurrency}", f"{name}-{i}", **env))
            )
            for i in range(nodes)
        ]
        send_sweep()
        time.sleep(opts.p2_warmup_s)
        first, t0 = completed_stages(services), time.perf_counter()
        log.info("bench.p2.window", pool=spec, seconds=opts.p2_window_s)
        time.sleep(opts.p2_window_s)
        last, t1 = completed_stages(services), time.perf_counter()
        rss = sum(tree_rss_bytes(p.popen.pid) for p in procs)
    rate = (last - first) / 3 / (t1 - t0)
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
    rows = []
    with running(fake):
        top = max(calls_in_flight(s) for s in opts.p2_pools)
        capacity, failed = fake_capacity(url, top, opts.p2_latency_s)
        log.info(
            "bench.p2.fake_capacity", in_flight=top, calls_per_s=round(capacity, 1), failed=failed
        )
        rows.append(
            Row(
                f"P2 fake server alone, {top} calls in flight at {opts.p2_latency_s:g} s",
                f"{capacity:.1f} calls/s, {failed} failed",
                f"bound {top / opts.p2_latency_s:.0f}/s",
                f"{capacity * opts.p2_latency_s / top:.2f}",
                "not the bottleneck",
                None,
                {"calls_per_s": capacity, "failed": failed},
            )
        )
        for spec in opts.p2_pools:
            if not _pool_available(spec):
                log.warning("bench.p2.skipped", pool=spec, reason="gevent is not installed")
                rows.append(Row(f"P2 {spec}", "skipped: not installed", "-", "-", "-", None))
                continue
            rows.append(_p2_row(p2_one(services, opts, spec, url), opts))
    return rows


def _pool_available(spec: str) -> bool:
    """gevent is not a project dependency (`pip install gevent` to measure it)."""
    import importlib.util

    return parse_pool(spec)[0] != "gevent" or importlib.util.find_spec("gevent") is not None


def _p2_row(r: dict[str, Any], opts: Options) -> Row:
    ratio = r["records_per_s"] / r["bound_per_s"]
    per_min = r["records_per_s"] * 60
    ok = ratio >= 0.8 and per_min >= 2000 and "failed" not in r["outcomes"]
    return Row(
        f"P2 AI at {opts.p2_latency_s:g} s, {r['pool']} (RSS {r['rss_mb']:.0f} MB)",
        f"{per_min:,.0f} rec/min",
        f"C/(3L) = {r['bound_per_s'] * 60:,.0f}/min",
        f"{ratio:.2f}",
        ">= 0.80 and >= 2,000/min",
        ok,
        r,
    )


# --- P3: query cost -------------------------------------------------------------------------

_P3_TENANTS = """
INSERT INTO tenants (id, name, confidence_threshold, settings, created_at)
SELECT t, 'bench-' || t, 0.7, '{}', now() - interval '90 days' FROM generate_series(1, 10) t
"""
# Tenant 1 holds 40% of the records, tenants 2..10 share the rest.
_P3_ORDERS = """
INSERT INTO orders (id, tenant_id, external_id, payload, events, created_at)
SELECT g, CASE WHEN g % 5 < 2 THEN 1 ELSE 2 + g % 9 END, 'o-' || g,
  CAST(:payload AS jsonb), '[]', now() - (g % 2592000) * interval '1 second'
FROM generate_series(1, :n) g
"""
# g % 100: 0-79 enriched, 80-83 escalated, 84-87 low confidence waiting for a recheck,
# 88-94 in backoff (15 min to 4 h ahead), 95-99 due now (one in ten of those leased).
_P3_RECORDS = """
INSERT INTO exception_records (id, tenant_id, order_id, external_id, reason_code, severity,
  status, notes, ai_label, ai_confidence, ai_source, enrichment_state, enrichment_retry_count,
  next_attempt_at, lease_token, lease_expires_at, enriched_at, escalated_at, created_at,
  updated_at)
SELECT o.id, o.tenant_id, o.id, 'e-' || o.id, 'DAMAGE', 'high', 'OPEN', :notes,
  CASE WHEN b < 80 THEN 'DAMAGED_PACKAGE' WHEN b BETWEEN 84 AND 87 THEN 'OTHER' END,
  CASE WHEN b < 80 THEN 0.85 WHEN b BETWEEN 84 AND 87 THEN 0.4 END,
  '{}', '{}',
  CASE WHEN b BETWEEN 80 AND 83 THEN 5 WHEN b BETWEEN 84 AND 94 THEN 1 + o.id % 4 ELSE 0 END,
  CASE WHEN b BETWEEN 84 AND 87 THEN now() + (1 + o.id % 24) * interval '1 hour'
       WHEN b BETWEEN 88 AND 94 THEN now() + (15 + o.id % 225) * interval '1 minute'
       WHEN b >= 95 THEN now() - (o.id % 3600) * interval '1 second'
       ELSE o.created_at END,
  CASE WHEN b >= 95 AND o.id % 10 = 0 THEN md5(o.id::text)::uuid::text END,
  CASE WHEN b >= 95 AND o.id % 10 = 0 THEN now() + interval '10 minutes' END,
  CASE WHEN b < 80 THEN o.created_at + interval '1 hour' END,
  CASE WHEN b BETWEEN 80 AND 83 THEN o.created_at + interval '2 hours' END,
  o.created_at, o.created_at
FROM (SELECT *, id % 100 AS b FROM orders) o
"""
_P3_ATTEMPTS = """
INSERT INTO enrichment_attempts (tenant_id, record_id, stage, outcome, latency_s, provider,
  model, prompt_version, input_tokens, output_tokens, cache_write_tokens, cache_read_tokens,
  cost_usd, lease_token, created_at)
SELECT tenant_id, id, 'classification', CASE WHEN id % 20 = 0 THEN 'failed' ELSE 'completed' END,
  0.8, 'anthropic', 'claude-haiku-4-5', 'v1', 500, 80, 0, 400, 0.001,
  md5(id::text)::uuid::text, now() - (id % 604800) * interval '1 second'
FROM exception_records
"""
_P3_SEQUENCES = """
SELECT setval(pg_get_serial_sequence('tenants', 'id'), 10),
       setval(pg_get_serial_sequence('orders', 'id'), :n),
       setval(pg_get_serial_sequence('exception_records', 'id'), :n)
"""
# Older snapshots, copied from the monitor's first real one: 12 a day for 30 days per tenant.
_P3_SNAPSHOTS = """
INSERT INTO metric_snapshots ({cols}, taken_at)
SELECT {cols}, taken_at - g * interval '2 hours'
FROM metric_snapshots, generate_series(1, 360) g
"""


def p3_seed(services: Services, n: int) -> None:
    steps = [
        ("tenants", _P3_TENANTS, {}),
        ("orders", _P3_ORDERS, {"n": n, "payload": json.dumps(_ORDER)}),
        ("records", _P3_RECORDS, {"notes": NOTES}),
        ("attempts", _P3_ATTEMPTS, {}),
        ("sequences", _P3_SEQUENCES, {"n": n}),
    ]
    for name, statement, params in steps:
        started = time.perf_counter()
        sql(services, statement, **params)
        log.info("bench.p3.seeded", table=name, seconds=round(time.perf_counter() - started, 1))


def p3_snapshots(services: Services) -> float:
    """One real monitor run (all tenants; its time is returned), then a month of history."""
    from enrichment.core import db
    from enrichment.core.models import MetricSnapshot
    from enrichment.core.settings import get_settings
    from enrichment.monitoring import monitor

    started = time.perf_counter()
    monitor.run_monitor(db.session_factory(services.db_url), get_settings())
    elapsed = time.perf_counter() - started
    cols = ", ".join(
        c.name for c in MetricSnapshot.__table__.columns if c.name not in ("id", "taken_at")
    )
    sql(services, _P3_SNAPSHOTS.format(cols=cols))
    return elapsed


def vacuum(services: Services) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(services.db_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()


@dataclass
class Captured:
    statement: str
    parameters: Any
    seconds: float


class Capture:
    """Records every statement an engine sends, with its parameters and its wall time."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.engine, self.statements, self._t = engine, [], 0.0
        self._event = event
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, *_args: Any) -> None:
        self._t = time.perf_counter()

    def _after(self, _conn, _cursor, statement, parameters, _context, _many) -> None:
        self.statements.append(Captured(statement, parameters, time.perf_counter() - self._t))

    def close(self) -> None:
        self._event.remove(self.engine, "before_cursor_execute", self._before)
        self._event.remove(self.engine, "after_cursor_execute", self._after)


@contextmanager
def rolled_back(services: Services) -> Iterator[Any]:
    """A session whose transaction is always rolled back (claims leave no trace)."""
    from sqlalchemy.orm import Session

    from enrichment.core import db

    with db.get_engine(services.db_url).connect() as conn:
        trans = conn.begin()
        try:
            yield Session(bind=conn, join_transaction_mode="create_savepoint")
        finally:
            trans.rollback()


def p3_queries(services: Services) -> dict[str, Callable[[Any], None]]:
    """The measured calls: the real functions, each given a fresh rolled-back session."""
    from sqlalchemy import func, select

    from enrichment.core import selection
    from enrichment.core.models import ExceptionRecord, Tenant, utcnow
    from enrichment.core.settings import get_settings
    from enrichment.monitoring import monitor

    settings, config = get_settings(), monitor.MonitorConfig.from_env()
    with rolled_back(services) as s:
        big = s.scalar(
            select(ExceptionRecord.tenant_id)
            .group_by(ExceptionRecord.tenant_id)
            .order_by(func.count().desc())
            .limit(1)
        )

    def claim_all(s: Any) -> None:
        selection.claim_due(s, settings)

    def claim_tenant(s: Any) -> None:
        selection.claim_due(s, settings, tenant_id=big)

    def measure(s: Any) -> None:
        monitor.measure(s, s.get(Tenant, big), settings, config, now=utcnow())

    return {
        "claim_due (all tenants)": claim_all,
        f"claim_due (tenant {big})": claim_tenant,
        f"monitor.measure (tenant {big})": measure,
    }


_EXPECTED_INDEX = {
    "UPDATE exception_records": "idx_enrichment_due",
    "FROM metric_snapshots": "ix_metric_snapshots_tenant_taken",
    "FROM enrichment_attempts": "ix_enrichment_attempts_tenant_created",
    "FROM exception_records": "ix_exception_records_monitor",
}


def _label(statement: str) -> str:
    for marker in _EXPECTED_INDEX:
        if marker in statement:
            return marker
    return statement.split()[0]


def explain(services: Services, captured: Captured) -> str:
    with rolled_back(services) as s:
        rows = (
            s.connection()
            .exec_driver_sql(
                "EXPLAIN (ANALYZE, BUFFERS) " + captured.statement, captured.parameters
            )
            .all()
        )
    return "\n".join(r[0] for r in rows)


def p3_measure(services: Services, name: str, call: Callable[[Any], None]) -> list[dict]:
    """Run `call` three times; per statement: the median wall time and the plan."""
    from enrichment.core import db

    runs: list[list[Captured]] = []
    for _ in range(3):
        capture = Capture(db.get_engine(services.db_url))
        try:
            with rolled_back(services) as s:
                call(s)
        finally:
            capture.close()
        runs.append([c for c in capture.statements if _label(c.statement) in _EXPECTED_INDEX])
    results = []
    for i, first in enumerate(runs[0]):
        times = [run[i].seconds for run in runs if i < len(run)]
        plan = explain(services, first)
        label = _label(first.statement)
        index = _EXPECTED_INDEX.get(label, "")
        results.append(
            {
                "call": name,
                "statement": label,
                "median_s": statistics.median(times),
                "index": index,
                "index_used": bool(index) and index in plan,
                "plan": plan,
                "sql": first.statement,
            }
        )
    return results


def bench_p3(services: Services, opts: Options) -> list[Row]:
    reset_data(services)
    log.info("bench.p3.seeding", records=opts.p3_records)
    p3_seed(services, opts.p3_records)
    vacuum(services)
    monitor_all_s = p3_snapshots(services)
    vacuum(services)
    measured = []
    for name, call in p3_queries(services).items():
        measured.extend(p3_measure(services, name, call))
    _write_plans(opts.out_dir / "p3-explain.txt", measured)
    rows = [_p3_row(m) for m in measured]
    rows.append(
        Row(
            f"P3 monitor run, all 10 tenants ({opts.p3_records:,} records)",
            f"{monitor_all_s:.2f} s",
            "-",
            "-",
            "info",
            None,
            {"seconds": monitor_all_s},
        )
    )
    return rows


def _p3_row(m: dict[str, Any]) -> Row:
    ok = m["median_s"] < 1.0 and m["index_used"]
    used = f"uses {m['index']}" if m["index_used"] else f"NOT using {m['index'] or 'an index'}"
    return Row(
        f"P3 {m['call']}: {m['statement']}",
        f"{m['median_s'] * 1000:.1f} ms ({used})",
        "1 s",
        f"{m['median_s']:.3f}",
        "< 1 s, index used",
        ok,
        {k: v for k, v in m.items() if k != "plan"},
    )


def _write_plans(path: Path, measured: list[dict[str, Any]]) -> None:
    chunks = []
    for m in measured:
        chunks.append(
            f"== {m['call']}: {m['statement']} ({m['median_s'] * 1000:.1f} ms)\n"
            f"{m['sql']}\n\n{m['plan']}\n"
        )
    path.write_text("\n".join(chunks))
    print("\n".join(chunks), flush=True)


# --- P4: memory -----------------------------------------------------------------------------


def bench_p4(services: Services, opts: Options) -> list[Row]:
    reset_data(services)
    tenant_id = seed_tenant(services)
    # Due 1 to 2 hours from now: far beyond the 6-minute sweep horizon.
    seed_records(services, tenant_id, opts.p4_records, prefix="p4-", delay_s=3600.0, spread_s=3600)
    fake, url = start_fake(services, 0.0)
    name = "p4-" + opts.p4_pool.replace(":", "-")
    # Beat's `expires` equals the interval: under load a 1 s expiry discards most sweeps.
    beat_env = {"ENRICHMENT_SWEEP_INTERVAL_S": "5", "ENRICHMENT_MONITOR_INTERVAL_S": "15"}
    with (
        running(fake),
        running(
            start_worker(services, opts.p4_pool, name, ANTHROPIC_BASE_URL=url, **beat_env)
        ) as worker,
    ):
        time.sleep(3)
        idle = tree_rss_bytes(worker.popen.pid)
        samples = _sample_rss(services, worker, opts.p4_duration_s, beat_env)
        sweeps = worker.text().count('"sweep.claimed"')
        monitors = worker.text().count('"monitor.done"')
    growth = (max(samples) - idle) / MB
    late = (samples[-1] - samples[len(samples) // 2]) / MB
    log.info(
        "bench.p4.memory",
        idle_mb=round(idle / MB),
        max_mb=round(max(samples) / MB),
        sweeps=sweeps,
        monitors=monitors,
    )
    claimed = sql(services, "SELECT count(*) FROM exception_records WHERE lease_token IS NOT NULL")
    return [
        Row(
            f"P4 worker RSS, {opts.p4_records:,} in backoff, {sweeps} sweeps + {monitors} monitor "
            f"runs in {opts.p4_duration_s:g} s ({opts.p4_pool})",
            f"+{growth:.1f} MB (2nd half {late:+.1f} MB)",
            f"idle {idle / MB:.0f} MB",
            "-",
            "<= +50 MB",
            growth <= 50 and claimed[0][0] == 0 and sweeps > 0,
            {
                "idle_mb": idle / MB,
                "max_mb": max(samples) / MB,
                "growth_mb": growth,
                "second_half_mb": late,
                "sweeps": sweeps,
                "monitors": monitors,
                "claimed": claimed[0][0],
            },
        )
    ]


def _sample_rss(services: Services, worker: Proc, duration_s: float, env: dict) -> list[int]:
    samples = []
    with running(start_beat(services, **env)):
        deadline = time.monotonic() + duration_s
        while time.monotonic() < deadline:
            samples.append(tree_rss_bytes(worker.popen.pid))
            time.sleep(1.0)
    return samples


# --- main -----------------------------------------------------------------------------------

RUNNERS: dict[str, Callable[[Services, Options], list[Row]]] = {
    "p1": bench_p1,
    "p2": bench_p2,
    "p3": bench_p3,
    "p4": bench_p4,
}


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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
