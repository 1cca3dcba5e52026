"""`make demo`: the whole fleet on the embedded default, end to end, in a few minutes.

Migrates the database, generates and ingests a backlog, starts a real Celery worker and a
real beat as separate processes, shows progress until every record is terminal (enriched
or escalated), prints a per-tenant summary and stops its processes. Runs on SQLite and
kombu's filesystem broker under ./var/ by default, or on DATABASE_URL/CELERY_BROKER_URL.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import case, func, select

from enrichment.core import db
from enrichment.core.models import EnrichmentAttempt, ExceptionRecord, Tenant
from enrichment.core.settings import VAR_DIR, get_settings
from enrichment.ingestion import ingest
from enrichment.tooling import generate

# Demo defaults, each overridable from the environment: retries in seconds, not hours.
DEMO_ENV = {
    "ENRICHMENT_BACKOFF_SCALE": "0.002",  # 1m/5m/15m/1h/4h -> 0.12/0.6/1.8/7.2/28.8 s
    "ENRICHMENT_SWEEP_INTERVAL_S": "1",
    "ENRICHMENT_LOW_CONFIDENCE_RECHECK_S": "1",
    "ENRICHMENT_LEASE_TTL_S": "60",
    "ENRICHMENT_LOCAL_FAULT_RATE": "0.1",  # show real failures and retries
}


@dataclass(frozen=True)
class Progress:
    total: int
    completed: int
    escalated: int
    retries: int

    @property
    def terminal(self) -> int:
        return self.completed + self.escalated


def run(*, records: int, tenant: str, timeout_s: float) -> int:
    for key, value in DEMO_ENV.items():
        os.environ.setdefault(key, value)
    get_settings.cache_clear()
    settings = get_settings()
    fresh_embedded_state(settings.database_url, settings.broker_url)
    db.migrate(settings.database_url)
    batch = f"demo-{uuid.uuid4().hex[:8]}-"
    factory = db.session_factory(settings.database_url)
    path = generate.write_jsonl(
        VAR_DIR / "demo.jsonl", tenant=tenant, count=records, seed=7, id_prefix=batch
    )
    report = ingest.ingest_file(factory, path, create_tenants=True)
    print(f"ingested {report.loaded} records for {tenant} ({len(report.rejected)} rejected)")
    procs = start_fleet()
    try:
        ok = watch(factory, batch, records, timeout_s, procs)
    finally:
        stop_fleet(procs)
    print_summary(factory, batch)
    return 0 if ok else 1


def fresh_embedded_state(database_url: str, broker_url: str) -> None:
    """The embedded default starts from nothing each run; real servers are left alone."""
    if database_url.startswith("sqlite"):
        for suffix in ("", "-wal", "-shm"):
            Path(database_url.split("///", 1)[1] + suffix).unlink(missing_ok=True)
    if broker_url.startswith("filesystem"):
        shutil.rmtree(VAR_DIR / "broker", ignore_errors=True)


def start_fleet() -> list[subprocess.Popen]:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    celery = [sys.executable, "-m", "celery", "-A", "workers"]
    worker = [*celery, "worker", "--concurrency=2", "--loglevel=INFO", "-n", "demo@%h"]
    beat = [*celery, "beat", "--loglevel=INFO", "-s", str(VAR_DIR / "celerybeat-schedule")]
    procs = []
    for name, cmd in (("worker", worker), ("beat", beat)):
        log = open(VAR_DIR / f"demo-{name}.log", "w")  # noqa: SIM115 - closed with the process
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
        print(f"started {name} (pid {procs[-1].pid}), log: {VAR_DIR}/demo-{name}.log")
    return procs


def stop_fleet(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)  # warm shutdown: running tasks finish
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    print("worker and beat stopped")


def progress(factory, batch: str) -> Progress:
    R = ExceptionRecord
    with factory() as s:
        row = s.execute(
            select(
                func.count(),
                func.count(R.enriched_at),
                func.count(R.escalated_at),
                func.coalesce(func.sum(R.enrichment_retry_count), 0),
            ).where(R.external_id.like(f"{batch}%"))
        ).one()
    return Progress(*row)


def watch(factory, batch: str, total: int, timeout_s: float, procs) -> bool:
    """Draw a progress bar until every record is terminal; False on timeout or a dead process."""
    started = time.monotonic()
    while True:
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            print(f"\na fleet process exited (pid {dead[0].pid}, code {dead[0].returncode}):")
            print(f"see {VAR_DIR}/demo-worker.log and {VAR_DIR}/demo-beat.log")
            return False
        p = progress(factory, batch)
        elapsed = time.monotonic() - started
        draw(p, elapsed)
        if p.total and p.terminal >= p.total:
            print(f"\nall {p.total} records terminal after {elapsed:.1f}s")
            return True
        if elapsed > timeout_s:
            print(f"\ntimed out after {timeout_s:.0f}s with {p.total - p.terminal} pending")
            return False
        time.sleep(0.5)


def draw(p: Progress, elapsed_s: float, width: int = 40) -> None:
    """Redraw one line on a terminal; elsewhere (CI logs) print a line every 5 s."""
    tty = sys.stdout.isatty()
    if not tty and int(elapsed_s * 2) % 10:
        return
    done = int(width * p.terminal / p.total) if p.total else 0
    bar = "#" * done + "." * (width - done)
    line = (
        f"[{bar}] {p.terminal}/{p.total} terminal | completed {p.completed} "
        f"escalated {p.escalated} retries {p.retries} | {elapsed_s:5.1f}s"
    )
    sys.stdout.write("\r" + line if tty else line + "\n")
    sys.stdout.flush()


def print_summary(factory, batch: str) -> None:
    R, A = ExceptionRecord, EnrichmentAttempt
    terminal = (R.enriched_at.is_not(None)) | (R.escalated_at.is_not(None))
    correct = case((R.ai_label == R.reference_label, 1), else_=0)
    with factory() as s:
        rows = s.execute(
            select(
                Tenant.name,
                func.count(R.enriched_at),
                func.count(R.escalated_at),
                func.sum(case((terminal, 0), else_=1)),
                func.coalesce(func.sum(R.enrichment_retry_count), 0),
                func.sum(case((R.enriched_at.is_not(None), correct), else_=0)),
            )
            .join(Tenant, Tenant.id == R.tenant_id)
            .where(R.external_id.like(f"{batch}%"))
            .group_by(Tenant.name)
        ).all()
        failed = s.scalar(
            select(func.count())
            .select_from(A)
            .join(R, R.id == A.record_id)
            .where(R.external_id.like(f"{batch}%"), A.outcome == "failed")
        )
    print(
        f"\n{'tenant':<12} {'completed':>9} {'escalated':>9} {'pending':>7} {'retries':>7}"
        f" {'label ok':>9}"
    )
    for name, completed, escalated, pending, retries, ok in rows:
        share = f"{100 * ok / completed:.0f}%" if completed else "-"
        print(f"{name:<12} {completed:>9} {escalated:>9} {pending:>7} {retries:>7} {share:>9}")
    print(f"failed AI attempts (all retried or escalated): {failed}")
