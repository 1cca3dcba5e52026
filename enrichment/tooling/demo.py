"""`make demo`: the whole fleet on the embedded default, end to end, in a few minutes.

Migrates the database, generates and ingests a backlog, starts a real Celery worker and a
real beat as separate processes, shows progress until every record is terminal (enriched
or escalated), prints a per-tenant summary and stops its processes. Runs on SQLite and
kombu's filesystem broker under ./var/ by default, or on DATABASE_URL/CELERY_BROKER_URL.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

from sqlalchemy import case, func, select

from enrichment.core import db
from enrichment.core.models import EnrichmentAttempt, ExceptionRecord, Tenant
from enrichment.core.settings import VAR_DIR, get_settings
from enrichment.ingestion import ingest
from enrichment.tooling import generate
from enrichment.tooling.processes import Proc, start_beat, start_worker, stop_all
from enrichment.tooling.progress import ProgressLine, read_progress

# Demo defaults, each overridable from the environment: retries in seconds, not hours.
DEMO_ENV = {
    "ENRICHMENT_BACKOFF_SCALE": "0.002",  # 1m/5m/15m/1h/4h -> 0.12/0.6/1.8/7.2/28.8 s
    "ENRICHMENT_SWEEP_INTERVAL_S": "1",
    "ENRICHMENT_LOW_CONFIDENCE_RECHECK_S": "1",
    "ENRICHMENT_LEASE_TTL_S": "60",
    "ENRICHMENT_LOCAL_FAULT_RATE": "0.1",  # show real failures and retries
}


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


def start_fleet() -> list[Proc]:
    """A worker and a beat, not waited for: `watch` notices one that exits."""
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # The children run from the repository root: pin the folder this process resolved.
    env = {**os.environ, "ENRICHMENT_VAR_DIR": str(VAR_DIR)}
    worker = start_worker(
        env, VAR_DIR / "demo-worker.log", name="demo", concurrency=2, ready_timeout_s=None
    )
    beat = start_beat(env, VAR_DIR / "demo-beat.log", VAR_DIR / "celerybeat-schedule")
    for name, proc in (("worker", worker), ("beat", beat)):
        print(f"started {name} (pid {proc.pid}), log: {proc.log_path}")
    return [worker, beat]


def stop_fleet(procs: list[Proc]) -> None:
    stop_all(procs, timeout_s=15)  # warm shutdown: running tasks finish
    print("worker and beat stopped")


def watch(factory, batch: str, total: int, timeout_s: float, procs: list[Proc]) -> bool:
    """Draw a progress bar until every record is terminal; False on timeout or a dead process."""
    started = time.monotonic()
    line = ProgressLine(every_s=5.0)
    in_batch = ExceptionRecord.external_id.like(f"{batch}%")
    while True:
        dead = [p for p in procs if not p.alive()]
        if dead:
            code = dead[0].popen.returncode
            print(f"\na fleet process exited (pid {dead[0].pid}, code {code}):")
            print(f"see {VAR_DIR}/demo-worker.log and {VAR_DIR}/demo-beat.log")
            return False
        p = read_progress(factory, in_batch)
        elapsed = time.monotonic() - started
        line.draw(p, elapsed)
        if p.total and p.terminal >= p.total:
            print(f"\nall {p.total} records terminal after {elapsed:.1f}s")
            return True
        if elapsed > timeout_s:
            print(f"\ntimed out after {timeout_s:.0f}s with {p.total - p.terminal} pending")
            return False
        time.sleep(0.5)


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
