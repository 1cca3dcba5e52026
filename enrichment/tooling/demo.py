"""`make demo`: the whole fleet on the embedded default, end to end, in a few minutes.

Migrates the database, generates and ingests a backlog and a few orders (`demo_orders`: the
order analysis flags some before the tenant's own exceptions arrive), starts a local webhook
receiver (it verifies every signature) and points the demo tenant's webhook at it, starts a real
Celery worker and a real beat as separate processes, shows progress until every record is
terminal (enriched or escalated) and its events delivered, stops its processes (and removes
the webhook: the receiver is gone), prints a per-tenant summary with the escalations by
reason and the events delivered, reviews every record in the review queue with the
generator's true label standing in for a person (simulated reviews) and prints the
calibration against them with the threshold advice, takes one monitor snapshot and prints
the demo tenant's new API key, a new key for its reviewer "demo reviewer" and what to try
next. Runs on SQLite and kombu's filesystem broker under ./var/ by default, or on
DATABASE_URL/CELERY_BROKER_URL.

Each run adds a new batch (its external ids carry a fresh prefix) to the records of earlier
runs; the progress and the summary count only this run's batch.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid

from sqlalchemy import and_, case, func, select

from enrichment.core import audit, db, reviewers, tenants
from enrichment.core.models import (
    EXCEPTION,
    EnrichmentAttempt,
    ExceptionRecord,
    OutboxEvent,
    Tenant,
    utcnow,
)
from enrichment.core.settings import VAR_DIR, Settings, get_settings
from enrichment.core.taxonomy import ALLOWED_ACTIONS, Label
from enrichment.delivery import webhooks
from enrichment.ingestion import ingest
from enrichment.metrics.monitor import run_monitor
from enrichment.reviews import calibration, decide, queue
from enrichment.reviews.decide import ReviewIn
from enrichment.tooling import demo_orders, generate
from enrichment.tooling.demo_escalations import print_escalations
from enrichment.tooling.processes import Proc, start_beat, start_worker, stop_all
from enrichment.tooling.progress import ProgressLine, read_progress
from enrichment.tooling.receiver import Receiver

# Demo defaults, each overridable from the environment: retries in seconds, not hours.
DEMO_ENV = {
    "ENRICHMENT_BACKOFF_SCALE": "0.002",  # 1m/5m/15m/1h/4h -> 0.12/0.6/1.8/7.2/28.8 s
    "ENRICHMENT_SWEEP_INTERVAL_S": "1",
    "ENRICHMENT_LOW_CONFIDENCE_RECHECK_S": "1",
    "ENRICHMENT_LEASE_TTL_S": "60",
    "ENRICHMENT_LOCAL_FAULT_RATE": "0.1",  # show real failures and retries
    # Decisions go to a local receiver (plain http on 127.0.0.1), retried in seconds.
    "ENRICHMENT_WEBHOOK_ALLOW_PRIVATE": "1",
    "ENRICHMENT_WEBHOOK_BACKOFF_SCALE": "0.002",
    "ENRICHMENT_WEBHOOK_INTERVAL_S": "2",
    # A quarter of the AI-resolved records go to the audit sample, not the default 2 %: the
    # default 500 records then give about 120 audits, past the 100 reviews the threshold
    # advice needs (2 % would give about 10); reviewing them (simulated) takes under a second.
    "ENRICHMENT_AUDIT_RATE": "0.25",
}
REVIEWER = "demo-simulated"  # the generator's true labels stand in for a person
SIMULATED = audit.reviewer_actor(REVIEWER)
YOU = "demo reviewer"  # the reviewer whose key the demo prints, for the review page
DELIVERY_WAIT_S = 30.0  # after the last record: how long the events may take to arrive


def run(*, records: int, tenant: str, timeout_s: float) -> int:
    for key, value in DEMO_ENV.items():
        os.environ.setdefault(key, value)
    get_settings.cache_clear()
    settings = get_settings()
    clear_embedded_broker(settings.broker_url)
    db.migrate(settings.database_url)
    batch = f"demo-{uuid.uuid4().hex[:8]}-"
    factory = db.session_factory(settings.database_url)
    say_kept(factory, settings.database_url, batch)
    path = generate.write_jsonl(
        VAR_DIR / "demo.jsonl", tenant=tenant, count=records, seed=7, id_prefix=batch
    )
    report = ingest.ingest_file(factory, path, create_tenants=True)
    print(f"ingested {report.created} records for {tenant} ({len(report.rejected)} rejected)")
    orders = demo_orders.ingest(factory, tenant, batch)
    with Receiver() as receiver:
        receiver.secret = point_webhook(factory, settings, tenant, receiver.url)
        procs = start_fleet()
        try:
            ok = watch(factory, batch, records, timeout_s, procs)
            ok = demo_orders.show(factory, tenant, orders, procs) and ok
            # While the fleet runs, so the reviews' events are delivered like the AI's.
            reviews = simulate_reviews(factory, tenant)
            ok = wait_for_delivery(factory, batch, procs) and ok
        finally:
            stop_fleet(procs)
            point_webhook(factory, settings, tenant, None)
    print_summary(factory, batch)
    print_events(factory, batch, receiver)
    print_escalations(factory, batch)
    print_simulated_reviews(factory, settings, tenant, reviews)
    take_snapshot(factory, settings)
    print_next_steps(factory, tenant, busiest_record(factory, batch))
    return 0 if ok else 1


def clear_embedded_broker(broker_url: str) -> None:
    """Drop the filesystem broker's leftover messages, and say so; a real broker is left alone.

    An earlier run stopped mid-way leaves messages whose leases have expired or will: the
    sweep claims those records again, so the messages would only be stale duplicates."""
    folder = VAR_DIR / "broker"
    if not broker_url.startswith("filesystem") or not folder.exists():
        return
    stale = sum(1 for f in (folder / "queue").glob("*") if f.is_file())
    shutil.rmtree(folder, ignore_errors=True)
    if stale:
        print(f"cleared {stale} stale message(s) of an earlier run from the broker in {folder}")


def say_kept(factory, database_url: str, batch: str) -> None:
    """One line on the records earlier runs left: they stay, this run adds a batch."""
    with factory() as s:
        # exceptions (the raised ones too), not the orders' watches
        earlier = s.scalar(select(func.count()).where(ExceptionRecord.record_type == EXCEPTION))
    if not earlier:
        return
    sqlite = database_url.startswith("sqlite")
    place = database_url.split("///", 1)[1] if sqlite else "the DATABASE_URL database"
    hint = " (delete that file to start over)" if sqlite else ""
    print(f"keeping {earlier} records from earlier runs in {place}; adding batch {batch}*{hint}")


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


def point_webhook(factory, settings: Settings, tenant: str, url: str | None) -> str | None:
    """Set the tenant's webhook to the demo's receiver (its new secret), or remove it."""
    with factory.begin() as session:
        return webhooks.configure(tenants.require(session, tenant), url, settings.webhooks)


def _batch_events(batch: str):
    E, R = OutboxEvent, ExceptionRecord
    return (
        select(E.status, func.count())
        .join(R, and_(R.id == E.record_id, R.tenant_id == E.tenant_id))
        .where(R.external_id.like(f"{batch}%"))
        .group_by(E.status)
    )


def wait_for_delivery(factory, batch: str, procs: list[Proc]) -> bool:
    """Wait (bounded) until none of the batch's events is pending: the last decisions'."""
    deadline = time.monotonic() + DELIVERY_WAIT_S
    while time.monotonic() < deadline and all(p.alive() for p in procs):
        with factory() as s:
            if not dict(s.execute(_batch_events(batch)).all()).get("pending"):
                return True
        time.sleep(0.5)
    print(f"events still pending after {DELIVERY_WAIT_S:.0f}s: see {VAR_DIR}/demo-worker.log")
    return False


def print_events(factory, batch: str, receiver: Receiver) -> None:
    """The outbox's side and the receiver's: every event delivered once, signatures good."""
    with factory() as s:
        by_status = dict(s.execute(_batch_events(batch)).all())
    others = ", ".join(f"{k} {v}" for k, v in sorted(by_status.items()) if k != "delivered")
    print(
        f"events delivered {by_status.get('delivered', 0)}, dead {by_status.get('dead', 0)}"
        + (f" ({others})" if others else "")
        + f"; the receiver verified {len(receiver.unique_ids())} distinct events,"
        f" {receiver.bad_signatures} bad signatures"
    )


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


def simulate_reviews(factory, tenant: str) -> tuple[int, int, int]:
    """Review the tenant's audit sample as a person would: the generator's true label and its
    first allowed action (none for labels that allow none). The escalated records are left in
    the queue, for the person trying the review page.

    Returns (reviewed, actions requested, escalated records left for a person)."""
    reviewed = requested = 0
    with factory.begin() as s:
        t = tenants.require(s, tenant)
        waiting = queue.queue(s, t.id, now=utcnow(), limit=0).total
        items = queue.queue(s, t.id, now=utcnow(), limit=waiting).items
        for item in items:
            truth = s.get(ExceptionRecord, item.record_id).reference_label
            if item.kind != "audit" or truth not in set(Label):
                continue
            label = Label(truth)
            review = ReviewIn(
                label=label, actions=sorted(ALLOWED_ACTIONS[label])[:1], reviewer=REVIEWER
            )
            done = decide.submit(s, t, item.record_id, review, actor=SIMULATED)
            requested += len(done.new_actions)
            reviewed += 1
    return reviewed, requested, sum(item.kind == "escalation" for item in items)


def print_simulated_reviews(
    factory, settings: Settings, tenant: str, reviews: tuple[int, int, int]
) -> None:
    """The simulated reviews, then the calibration against them and the threshold advice."""
    reviewed, requested, left = reviews
    print(
        f"\nsimulated reviews: {reviewed} records of the audit sample (reviewer {REVIEWER}:"
        f" the generator's true label stands in for a person's), with {reviewed}"
        f" record.reviewed and {requested} action.requested events;"
        f" {left} escalated records wait for you on the review page"
    )
    with factory() as s:
        found = calibration.measure(s, tenants.require(s, tenant), settings)
    print("\n".join(calibration.table_lines(found, tenant)))


def take_snapshot(factory, settings: Settings) -> None:
    """One monitor snapshot, so `enrichment status`, the report and /metrics show this run."""
    snaps = run_monitor(factory, settings)
    print(f"monitor snapshot taken for {len(snaps)} tenant(s)")


def busiest_record(factory, batch: str) -> str | None:
    """The batch's record with the most attempts: the most telling story."""
    R, A = ExceptionRecord, EnrichmentAttempt
    with factory() as s:
        return s.scalar(
            select(R.external_id)
            .join(A, A.record_id == R.id)
            .where(R.external_id.like(f"{batch}%"))
            .group_by(R.id, R.external_id)
            .order_by(func.count().desc(), R.id)
            .limit(1)
        )


def print_next_steps(factory, tenant: str, record: str | None) -> None:
    """The demo tenant's new key and what to try with it."""
    with factory.begin() as session:
        row = tenants.require(session, tenant)
        api_key = tenants.rotate_key(row)
        if reviewers.active(session, row.id, YOU) is not None:  # an earlier run's
            reviewers.revoke(session, row.id, YOU)
        reviewer_key = reviewers.add(session, row.id, YOU)[1]
    base = "http://localhost:8000"
    print(
        f"""
API key for {tenant} (new: it replaced any earlier demo key; shown only now):
  {api_key}
Reviewer key for {tenant} (reviewer "{YOU}", for the review page; new, shown only now):
  {reviewer_key}
Try next:
  make api        then, in another terminal:
  curl -H "Authorization: Bearer {api_key}" localhost:8000/api/enrichment/health/{tenant}
  review page:    {base}/review/{tenant}    (sign in with the reviewer key)
  report page:    {base}/review/{tenant}/report    (behind the same sign-in)
  enrichment reviewer add {tenant} "Your Name"    (a key of your own; the audit log:
                  enrichment audit {tenant})
  API docs:       {base}/docs
  enrichment status {tenant}      (.venv/bin/enrichment, or `. .venv/bin/activate` first)
  enrichment show {tenant} {record or "EXTERNAL_ID"}    (one record's story, as a timeline)
  FLOWER_BASIC_AUTH=user:password make flower    then http://localhost:5555
                  (Flower's Broker tab does not work on the embedded filesystem broker;
                  it works on Redis and RabbitMQ)"""
    )
