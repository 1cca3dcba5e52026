"""`make drill`: the fault drill on local Redis and PostgreSQL, with a table of checks.

What it does, in phases (each timed):
1. setup: resets a dedicated PostgreSQL database (`drill`, migrated with the real
   migrations) and a dedicated Redis db (9, flushed), and starts a fake Anthropic server in
   this process with 30 % faults (429 with retry-after, 500, 529, timeouts, malformed and
   out-of-range answers, bad labels and actions: the fake's "mix").
2. ingest: generates N records (DRILL_RECORDS or --records, 10,000) over 3 tenants and
   loads them with the real JSONL ingestion.
3. fleet: starts 3 worker and 2 beat processes (two beats on purpose: the claim, not a
   single scheduler, must prevent double work), provider "anthropic" pointed at the fake.
4. run: waits until every record is terminal, injecting, as progress passes fixed marks:
   SIGKILL of a whole worker process group (and a replacement), a Redis restart (which loses
   every queued message: the database, lease expiry and the sweep must recover them) and
   `pg_terminate_backend` of every connection to the drill database.
5. checks: stops the fleet, then checks completeness, provenance of every label and
   confidence, actions (at most once, allowed for the label), AI calls per record (attempt
   rows and the fake server's own per-record request count), and the monitor against SQL.

Exit status 0 when every check passes, 1 otherwise. Every process started here is stopped,
and Redis is running again when the drill ends, whatever happened (Ctrl-C included).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import structlog
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from enrichment.core import db
from enrichment.core.settings import Settings
from enrichment.core.taxonomy import ALLOWED_ACTIONS, Label
from enrichment.ingestion import ingest
from enrichment.monitoring.monitor import MonitorConfig, run_monitor
from enrichment.tooling import generate
from enrichment.tooling.fake_anthropic import FakeAnthropic

log = structlog.get_logger(__name__)

ROOT = Path(__file__).resolve().parents[2]
TENANTS = ("drill-north", "drill-south", "drill-west")
PG_ADMIN_URL = "postgresql+psycopg://127.0.0.1:5432/postgres"
REDIS_PORT = 6379
# Exactly the brief's restart command: no persistence, so the restart loses the queue.
REDIS_START = [
    "redis-server",
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "--port",
    str(REDIS_PORT),
    "--save",
    "",
    "--appendonly",
    "no",
]
# Share of terminal records at which each fault is injected, in this order.
FAULT_MARKS = (("kill_worker", 0.15), ("restart_redis", 0.35), ("terminate_pg", 0.55))
SDK_MAX_RETRIES = 2


@dataclass(frozen=True)
class DrillConfig:
    """The drill's knobs (command-line flags; see `enrichment drill --help`).

    records: records over the 3 tenants (DRILL_RECORDS, 10,000). fault_rate: share of AI
    requests that fail (0.3). timeout_s: the run phase's limit (seconds, 1,800).
    lease_ttl_s: lease TTL given to the fleet (seconds, 90): how long a lost message waits
    before the sweep claims its record again. sweep_batch: records one sweep claims (per
    beat, every sweep_interval_s = 2 s), which keeps the queue about as deep as the fleet
    can work through within one lease.
    """

    records: int = 10_000
    workers: int = 3
    beats: int = 2
    concurrency: int = 4
    fault_rate: float = 0.3
    timeout_s: float = 1800.0
    lease_ttl_s: float = 90.0
    sweep_interval_s: float = 2.0
    sweep_batch: int = 100
    db_name: str = "drill"
    redis_db: int = 9
    seed: int = 11
    run_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="drill-")))

    @property
    def db_url(self) -> str:
        return f"postgresql+psycopg://127.0.0.1:5432/{self.db_name}"

    @property
    def broker_url(self) -> str:
        return f"redis://127.0.0.1:{REDIS_PORT}/{self.redis_db}"

    @property
    def max_retries(self) -> int:
        return 5


# ---------------------------------------------------------------- timings and results


class Phases:
    """Wall-clock seconds per phase, in the order they ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.started = time.monotonic()

    @contextmanager
    def phase(self, name: str):
        begin = time.monotonic()
        print(f"== {name}", flush=True)
        try:
            yield
        finally:
            self.seconds[name] = time.monotonic() - begin

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started


@dataclass(frozen=True)
class Check:
    """One line of the result table: a figure, what it must be, and whether it is."""

    name: str
    value: Any
    expected: str
    ok: bool | None  # None: a figure shown for information, not judged


# ---------------------------------------------------------------- the fake server


class CountingFake(FakeAnthropic):
    """The fake server, counting requests per record instead of keeping every body.

    A record is recognised by its delimited customer data, which is the same for all of its
    stages and unique per generated record (an accidental twin would only add to one count,
    so the per-record maximum can only be over-, never under-stated).
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(keep_requests=0, **kw)
        self.per_record: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()

    def respond(self, path: str, headers: dict[str, str], raw: bytes):
        self.per_record[_record_key(raw)] += 1
        return super().respond(path, headers, raw)

    def _next_entry(self, raw: bytes):
        entry = super()._next_entry(raw)
        self.kinds[entry if isinstance(entry, str) else "scripted"] += 1
        return entry


def _record_key(raw: bytes) -> str:
    try:
        text_ = json.loads(raw)["messages"][0]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return "unparsable"
    start, end = text_.find("<customer_data>"), text_.find("</customer_data>")
    return hashlib.sha1(text_[start:end].encode()).hexdigest()


# ---------------------------------------------------------------- services


def reset_database(cfg: DrillConfig) -> None:
    """Drop and re-create the drill database, then run the real migrations on it."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{cfg.db_name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{cfg.db_name}"'))
    admin.dispose()
    db.migrate(cfg.db_url)


def terminate_pg(cfg: DrillConfig) -> int:
    """Kill every connection to the drill database (workers, beats, ours); returns how many."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        killed = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": cfg.db_name},
        ).scalar_one()
    admin.dispose()
    return killed


def redis_up() -> bool:
    client = redis.Redis(host="127.0.0.1", port=REDIS_PORT, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def start_redis(timeout_s: float = 20.0) -> None:
    """Start redis-server as the brief says (if it is not running) and wait for PING."""
    if not redis_up():
        subprocess.run(REDIS_START, check=True, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    while not redis_up():
        if time.monotonic() > deadline:
            raise RuntimeError("redis-server did not answer PING after a restart")
        time.sleep(0.1)


def restart_redis() -> None:
    """Shut Redis down without saving (the queue is lost), then start it again."""
    subprocess.run(
        ["redis-cli", "-p", str(REDIS_PORT), "shutdown", "nosave"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    deadline = time.monotonic() + 10
    while redis_up() and time.monotonic() < deadline:
        time.sleep(0.05)
    start_redis()


# ---------------------------------------------------------------- the fleet


def fleet_env(cfg: DrillConfig, fake_url: str) -> dict[str, str]:
    """The workers' and beats' environment: the drill's services, scaled-down time."""
    drop = ("ENRICHMENT_", "ANTHROPIC_", "SLACK_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(
        DATABASE_URL=cfg.db_url,
        CELERY_BROKER_URL=cfg.broker_url,
        ENRICHMENT_VAR_DIR=str(cfg.run_dir),
        ENRICHMENT_LOG_FORMAT="json",
        ENRICHMENT_AI_PROVIDER="anthropic",
        ANTHROPIC_API_KEY="sk-ant-drill-test-key",
        ANTHROPIC_BASE_URL=fake_url,
        ENRICHMENT_AI_TIMEOUT_S="2",
        ENRICHMENT_AI_RPM="0",  # the fake has no quota; the limiter has its own tests
        ENRICHMENT_ANTHROPIC_MAX_RETRIES=str(SDK_MAX_RETRIES),
        ENRICHMENT_ANTHROPIC_MAX_RETRY_WAIT_S="1",
        # 1m/5m/15m/1h/4h -> 0.12/0.6/1.8/7.2/28.8 s: all five retries within ~40 s.
        ENRICHMENT_BACKOFF_SCALE="0.002",
        ENRICHMENT_LOW_CONFIDENCE_RECHECK_S="1",
        ENRICHMENT_SWEEP_INTERVAL_S=str(cfg.sweep_interval_s),
        ENRICHMENT_SWEEP_HORIZON_S="5",
        ENRICHMENT_SWEEP_BATCH_SIZE=str(cfg.sweep_batch),
        ENRICHMENT_SWEEP_MAX_BATCHES="1",
        ENRICHMENT_LEASE_TTL_S=str(cfg.lease_ttl_s),
        ENRICHMENT_MONITOR_INTERVAL_S="15",
    )
    return env


class Fleet:
    """Worker and beat subprocesses, each in its own process group with a log file."""

    def __init__(self, cfg: DrillConfig, env: dict[str, str]) -> None:
        self.cfg, self.env = cfg, env
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Any] = {}

    def _spawn(self, name: str, args: list[str]) -> None:
        log_file = open(self.cfg.run_dir / f"{name}.log", "w")  # noqa: SIM115 - closed in stop
        self.logs[name] = log_file
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers", *args],
            cwd=ROOT,
            env=self.env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a kill of the group takes the pool children too
        )

    def worker(self, name: str) -> None:
        args = ["worker", f"--concurrency={self.cfg.concurrency}", "--loglevel=INFO"]
        self._spawn(name, [*args, "-n", f"{name}@%h", "--without-mingle", "--without-gossip"])

    def beat(self, name: str) -> None:
        schedule = self.cfg.run_dir / f"{name}-schedule"
        self._spawn(name, ["beat", "--loglevel=INFO", "-s", str(schedule)])

    def wait_ready(self, names: list[str], timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        for name in names:
            path = self.cfg.run_dir / f"{name}.log"
            while "ready" not in path.read_text(errors="replace"):
                if self.procs[name].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start; see {path}")
                time.sleep(0.2)

    def kill(self, name: str) -> None:
        """SIGKILL the whole process group: the main process and every pool child."""
        with suppress(ProcessLookupError):
            os.killpg(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].wait(timeout=30)

    def stop(self) -> None:
        """Warm shutdown (SIGTERM) for all, then SIGKILL whatever is left after 20 s."""
        for proc in self.procs.values():
            if proc.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for name in list(self.procs):
            self._reap(name, max(0.1, deadline - time.monotonic()))
        for log_file in self.logs.values():
            log_file.close()

    def _reap(self, name: str, timeout_s: float) -> None:
        proc = self.procs[name]
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


# ---------------------------------------------------------------- ingest and progress


def ingest_records(cfg: DrillConfig, factory: sessionmaker[Session]) -> int:
    """Generate and load `cfg.records` records spread over the three tenants."""
    path = cfg.run_dir / "drill.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for i, tenant in enumerate(TENANTS):
            count = cfg.records // len(TENANTS) + (i < cfg.records % len(TENANTS))
            for line in generate.generate_lines(tenant, count, cfg.seed + i, id_prefix=tenant):
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
    report = ingest.ingest_file(factory, path, create_tenants=True)
    if report.rejected:
        raise RuntimeError(f"ingest rejected generated lines: {report.rejected[:3]}")
    return report.loaded


@dataclass(frozen=True)
class Progress:
    total: int
    enriched: int
    escalated: int
    leased: int

    @property
    def terminal(self) -> int:
        return self.enriched + self.escalated

    @property
    def done(self) -> bool:
        return self.total > 0 and self.terminal == self.total and self.leased == 0


def progress(factory: sessionmaker[Session]) -> Progress:
    sql = text(
        "SELECT count(*), count(enriched_at), count(escalated_at), count(lease_token)"
        " FROM exception_records"
    )
    with factory() as s:
        return Progress(*s.execute(sql).one())


def safe_progress(factory: sessionmaker[Session]) -> Progress | None:
    """Progress, or None while the database is briefly unreachable (we just killed it)."""
    try:
        return progress(factory)
    except Exception as exc:  # any driver error: the next poll tries again
        log.warning("drill.progress_unavailable", error=type(exc).__name__)
        return None


# ---------------------------------------------------------------- the run


class Injector:
    """Injects each fault once, when the share of terminal records passes its mark."""

    def __init__(self, cfg: DrillConfig, fleet: Fleet, phases: Phases) -> None:
        self.cfg, self.fleet, self.phases = cfg, fleet, phases
        self.pending = list(FAULT_MARKS)
        self.done: list[tuple[str, float, str]] = []
        self._actions: dict[str, Callable[[], str]] = {
            "kill_worker": self._kill_worker,
            "restart_redis": self._restart_redis,
            "terminate_pg": self._terminate_pg,
        }

    def maybe_inject(self, p: Progress) -> None:
        while self.pending and p.total and p.terminal / p.total >= self.pending[0][1]:
            name, _ = self.pending.pop(0)
            detail = self._actions[name]()
            self.done.append((name, self.phases.elapsed_s, detail))
            print(f"   fault {name} at {self.phases.elapsed_s:.1f}s: {detail}", flush=True)

    def _kill_worker(self) -> str:
        self.fleet.kill("worker-1")
        self.fleet.worker("worker-4")
        return "SIGKILL worker-1 process group; started worker-4"

    def _restart_redis(self) -> str:
        started = time.monotonic()
        restart_redis()
        return f"shutdown nosave + restart, PING after {time.monotonic() - started:.1f}s"

    def _terminate_pg(self) -> str:
        return f"pg_terminate_backend on {terminate_pg(self.cfg)} connections"


def run_until_terminal(cfg: DrillConfig, factory, injector: Injector) -> Progress:
    """Poll every second; inject faults at their marks; stop when all is terminal."""
    deadline = time.monotonic() + cfg.timeout_s
    last, last_print = None, 0.0
    while time.monotonic() < deadline:
        p = safe_progress(factory)
        if p is not None:
            last = p
            injector.maybe_inject(p)
            if p.done and not injector.pending:
                return p
            if time.monotonic() - last_print > 10:
                last_print = time.monotonic()
                _print_progress(p, injector.phases.elapsed_s)
        time.sleep(1.0)
    return last or progress(factory)


def _print_progress(p: Progress, elapsed_s: float) -> None:
    print(
        f"   {elapsed_s:7.1f}s  terminal {p.terminal}/{p.total}  enriched {p.enriched}"
        f"  escalated {p.escalated}  leased {p.leased}",
        flush=True,
    )


# ---------------------------------------------------------------- checks


def _scalar(s: Session, sql: str, **params: Any) -> Any:
    return s.execute(text(sql), params).scalar_one()


def check_completeness(s: Session, total: int) -> list[Check]:
    enriched = _scalar(s, "SELECT count(*) FROM exception_records WHERE enriched_at IS NOT NULL")
    escalated = _scalar(
        s,
        "SELECT count(*) FROM exception_records WHERE enriched_at IS NULL"
        " AND escalated_at IS NOT NULL AND coalesce(escalation_reason, '') <> ''",
    )
    leased = _scalar(s, "SELECT count(*) FROM exception_records WHERE lease_token IS NOT NULL")
    half = _scalar(
        s,
        "SELECT count(*) FROM exception_records WHERE enriched_at IS NOT NULL AND NOT ("
        " enrichment_state->'order_analysis'->>'status' = 'COMPLETED'"
        " AND enrichment_state->'classification'->>'status' = 'COMPLETED'"
        " AND enrichment_state->'automation'->>'status' = 'COMPLETED')",
    )
    return [
        Check("records ingested", total, "N", total > 0),
        Check("completed (enriched_at set)", enriched, "info", None),
        Check("escalated with a reason", escalated, "info", None),
        Check(
            "completed + escalated",
            enriched + escalated,
            f"= {total}",
            enriched + escalated == total,
        ),
        Check("records still leased", leased, "0", leased == 0),
        Check("enriched but a stage not COMPLETED", half, "0", half == 0),
    ]


def check_provenance(s: Session) -> list[Check]:
    """Every label/confidence came from a completed, validated anthropic classification."""
    labels = "', '".join(Label)
    orphan = _scalar(
        s,
        "SELECT count(*) FROM exception_records r"
        " WHERE (r.ai_label IS NOT NULL OR r.ai_confidence IS NOT NULL) AND NOT EXISTS ("
        "  SELECT 1 FROM enrichment_attempts a WHERE a.record_id = r.id"
        "  AND a.stage = 'classification' AND a.outcome = 'completed'"
        "  AND a.provider = 'anthropic')",
    )
    invalid = _scalar(
        s,
        "SELECT count(*) FROM exception_records WHERE"
        " (ai_label IS NULL) <> (ai_confidence IS NULL)"
        f" OR (ai_label IS NOT NULL AND ai_label NOT IN ('{labels}'))"
        " OR ai_confidence < 0 OR ai_confidence > 1"
        " OR (ai_label IS NOT NULL AND"
        "     ai_source->'classification'->>'provider' IS DISTINCT FROM 'anthropic')",
    )
    return [
        Check("label/confidence without a completed anthropic attempt", orphan, "0", orphan == 0),
        Check(
            "label outside taxonomy, confidence outside [0,1], or no source",
            invalid,
            "0",
            invalid == 0,
        ),
    ]


def check_actions(s: Session) -> list[Check]:
    twice = _scalar(
        s,
        "SELECT count(*) FROM (SELECT 1 FROM resolution_actions"
        " GROUP BY record_id, action HAVING count(*) > 1) d",
    )
    rows = s.execute(
        text(
            "SELECT ra.action, r.ai_label, r.enriched_at IS NOT NULL FROM resolution_actions ra"
            " JOIN exception_records r ON r.id = ra.record_id"
        )
    ).all()
    bad = sum(
        1
        for action, label, enriched in rows
        if not enriched
        or label not in Label.__members__
        or action not in ALLOWED_ACTIONS[Label(label)]
    )
    return [
        Check("resolution actions recorded", len(rows), "info", None),
        Check("actions recorded twice", twice, "0", twice == 0),
        Check("actions outside the label's allow-list", bad, "0", bad == 0),
    ]


def check_ai_calls(s: Session, cfg: DrillConfig, fake: CountingFake) -> list[Check]:
    """Stage attempts per record (attempt rows), and HTTP requests per record (the fake's
    count, which includes the SDK's own retries and calls whose worker died before it could
    write an attempt row)."""
    limit = 3 * (cfg.max_retries + 1)
    most = _scalar(
        s,
        "SELECT coalesce(max(n), 0) FROM (SELECT count(*) n FROM enrichment_attempts"
        " GROUP BY record_id) c",
    )
    http_limit = limit * (SDK_MAX_RETRIES + 1)
    http_most = max(fake.per_record.values(), default=0)
    return [
        Check("AI attempts (rows) per record, max", most, f"<= {limit}", most <= limit),
        Check(
            "HTTP requests to the fake per record, max",
            http_most,
            f"<= {http_limit} (x{SDK_MAX_RETRIES + 1} SDK tries)",
            http_most <= http_limit,
        ),
        Check("records seen by the fake", len(fake.per_record), "info", None),
    ]


_MONITOR_SQL = (
    "SELECT t.name, count(r.id), count(r.enriched_at), count(r.escalated_at),"
    " count(*) FILTER (WHERE r.enriched_at IS NULL AND r.escalated_at IS NULL),"
    " count(r.ai_confidence),"
    " count(*) FILTER (WHERE r.ai_confidence >= t.confidence_threshold)"
    " FROM tenants t JOIN exception_records r ON r.tenant_id = t.id GROUP BY t.name"
)
_MONITOR_FIELDS = (
    "total_records",
    "enriched_records",
    "escalated_records",
    "backlog_records",
    "classified_records",
    "high_confidence_records",
)


def check_monitor(factory: sessionmaker[Session], settings: Settings) -> list[Check]:
    snaps = {snap.tenant: snap for snap in run_monitor(factory, settings, config=MonitorConfig())}
    with factory() as s:
        direct = {row[0]: row[1:] for row in s.execute(text(_MONITOR_SQL))}
    mismatches = [
        f"{tenant}.{name}"
        for tenant, values in direct.items()
        for name, value in zip(_MONITOR_FIELDS, values, strict=True)
        if tenant not in snaps or getattr(snaps[tenant], name) != value
    ]
    return [
        Check(
            "monitor counts that differ from SQL",
            len(mismatches),
            f"0 (of {len(direct) * len(_MONITOR_FIELDS)})",
            not mismatches and len(snaps) == len(direct),
        )
    ]


def check_info(s: Session, fake: CountingFake) -> list[Check]:
    """Figures that show the faults did something (not judged)."""
    outcomes = dict(
        s.execute(text("SELECT outcome, count(*) FROM enrichment_attempts GROUP BY outcome")).all()
    )
    chains = _scalar(s, "SELECT count(DISTINCT lease_token) FROM enrichment_attempts")
    served = ", ".join(f"{k} {v}" for k, v in sorted(fake.kinds.items()))
    return [
        Check("attempt rows by outcome", dict(sorted(outcomes.items())), "info", None),
        Check("claims and re-lets (distinct lease tokens)", chains, "info", None),
        Check("fake answers served", served, "info", None),
    ]


def run_checks(cfg: DrillConfig, factory, fake: CountingFake, total: int) -> list[Check]:
    settings = Settings(database_url=cfg.db_url, broker_url=cfg.broker_url)
    with factory() as s:
        checks = check_completeness(s, total) + check_provenance(s) + check_actions(s)
        checks += check_ai_calls(s, cfg, fake) + check_info(s, fake)
    return checks + check_monitor(factory, settings)


# ---------------------------------------------------------------- report


def print_table(checks: list[Check], phases: Phases, injector: Injector | None) -> None:
    width = max(len(c.name) for c in checks)
    print(f"\n{'check':<{width}}  {'value':>10}  {'expected':<24} result")
    for c in checks:
        verdict = "-" if c.ok is None else "PASS" if c.ok else "FAIL"
        print(f"{c.name:<{width}}  {str(c.value):>10}  {c.expected:<24} {verdict}")
    print("\nfaults injected:")
    for name, at_s, detail in injector.done if injector else []:
        print(f"  {at_s:7.1f}s  {name}: {detail}")
    print("\nphase timings:")
    for name, seconds in phases.seconds.items():
        print(f"  {name:<8} {seconds:8.1f}s")
    print(f"  {'total':<8} {phases.elapsed_s:8.1f}s", flush=True)


# ---------------------------------------------------------------- main


def parse_args(argv: list[str]) -> DrillConfig:
    # A leading "--" (older docs wrote `enrichment drill -- --records 60`) is accepted.
    argv = argv[1:] if argv[:1] == ["--"] else argv
    p = argparse.ArgumentParser(prog="enrichment drill", description=__doc__.split("\n")[0])
    p.add_argument("--records", type=int, default=int(os.environ.get("DRILL_RECORDS", 10_000)))
    p.add_argument("--concurrency", type=int, default=4, help="pool size per worker (4)")
    p.add_argument("--fault-rate", type=float, default=0.3, help="share of failing AI calls")
    p.add_argument("--timeout-s", type=float, default=1800.0, help="run phase limit (s)")
    p.add_argument("--lease-ttl-s", type=float, default=90.0, help="fleet lease TTL (s)")
    p.add_argument("--sweep-batch", type=int, default=100, help="records per sweep per beat")
    p.add_argument("--db-name", default="drill")
    p.add_argument("--redis-db", type=int, default=9)
    p.add_argument("--run-dir", type=Path, default=None, help="logs (a temporary folder)")
    a = p.parse_args(argv)
    cfg = DrillConfig(
        records=a.records,
        concurrency=a.concurrency,
        fault_rate=a.fault_rate,
        timeout_s=a.timeout_s,
        lease_ttl_s=a.lease_ttl_s,
        sweep_batch=a.sweep_batch,
        db_name=a.db_name,
        redis_db=a.redis_db,
    )
    if a.run_dir is not None:
        a.run_dir.mkdir(parents=True, exist_ok=True)
        cfg = DrillConfig(**{**cfg.__dict__, "run_dir": a.run_dir})
    return cfg


def _sigterm(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt  # the same clean-up path as Ctrl-C


def main(argv: list[str]) -> int:
    cfg = parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _sigterm)
    print(f"drill: {cfg.records} records, logs in {cfg.run_dir}", flush=True)
    try:
        checks, phases, injector = _drill(cfg)
    finally:
        start_redis()  # whatever happened, Redis is left running
    print_table(checks, phases, injector)
    failed = [c.name for c in checks if c.ok is False]
    print("\nDRILL " + ("FAILED: " + "; ".join(failed) if failed else "PASSED"), flush=True)
    return 1 if failed else 0


def _drill(cfg: DrillConfig) -> tuple[list[Check], Phases, Injector | None]:
    phases = Phases()
    fake = CountingFake(
        faults=f"mix={cfg.fault_rate}", seed=cfg.seed, retry_after_s=0.5, hang_s=3.0
    )
    fleet, injector = None, None
    try:
        with phases.phase("setup"):
            start_redis()
            redis.Redis.from_url(cfg.broker_url).flushdb()
            reset_database(cfg)
            fake.start()
        factory = db.session_factory(cfg.db_url)
        with phases.phase("ingest"):
            total = ingest_records(cfg, factory)
        with phases.phase("fleet"):
            fleet = Fleet(cfg, fleet_env(cfg, fake.base_url))
            _start_fleet(cfg, fleet)
        injector = Injector(cfg, fleet, phases)
        with phases.phase("run"):
            final = run_until_terminal(cfg, factory, injector)
        _print_progress(final, phases.elapsed_s)
        with phases.phase("stop"):
            fleet.stop()
            fleet = None
        with phases.phase("checks"):
            checks = run_checks(cfg, factory, fake, total)
        if injector.pending:
            checks.append(Check("faults not injected", len(injector.pending), "0", False))
        return checks, phases, injector
    finally:
        if fleet is not None:
            fleet.stop()
        fake.close()
        db.dispose_engines()


def _start_fleet(cfg: DrillConfig, fleet: Fleet) -> None:
    workers = [f"worker-{n}" for n in range(1, cfg.workers + 1)]
    for name in workers:
        fleet.worker(name)
    fleet.wait_ready(workers)
    for n in range(1, cfg.beats + 1):
        fleet.beat(f"beat-{n}")
