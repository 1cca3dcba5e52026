"""Thin tasks: JSON-safe ids in, one domain call, the outcome mapped to what Celery does next.

Task names are stable: `celery call` and Flower show them.
"""

from __future__ import annotations

import structlog
from celery import Task, chain, signals
from kombu.exceptions import OperationalError

from enrichment import batches
from enrichment.alerting import dispatch, provider_page
from enrichment.batches import apply as batch_apply
from enrichment.batches import submit as batch_submit
from enrichment.core import audit, breaker_store, db, pipeline, selection, tenants
from enrichment.core.crashpoints import crash_point
from enrichment.core.outcomes import OutcomeKind
from enrichment.core.settings import get_settings
from enrichment.core.stages import Stage
from enrichment.delivery import deliver
from enrichment.experiments.cascade import Gates
from enrichment.experiments.router import ExperimentProvider
from enrichment.history import partitions, pruner, retire
from enrichment.metrics import cadence, monitor
from enrichment.providers import Provider, make_provider
from enrichment.providers.anthropic import AnthropicProvider
from enrichment.reviews import refit
from workers import arguments, broker_watch
from workers.app import app

log = structlog.get_logger(__name__)
# Outcomes whose write carried outbox events.
DECIDED = (OutcomeKind.DONE, OutcomeKind.ESCALATED)
# Who a task run by hand (`celery call`) is, in the audit log: the broker knows no user.
CALLED = "celery-call"


class EnrichmentTask(Task):
    """Owns the per-process session factory and provider, and the logging context."""

    _provider: Provider | None = None
    _stage_provider: Provider | None = None

    @property
    def settings(self):
        return get_settings()

    @property
    def sessions(self):
        return db.session_factory(self.settings.database_url)

    @property
    def engine(self):
        """The engine under `sessions`, for work on plain connections."""
        return db.get_engine(self.settings.database_url)

    @property
    def provider(self) -> Provider:
        # Created once per process, after fork.
        if EnrichmentTask._provider is None:
            EnrichmentTask._provider = make_provider(self.settings)
        return EnrichmentTask._provider

    @property
    def stage_provider(self) -> Provider:
        """`provider` under each tenant's experiment and cascade (enrichment/experiments)."""
        if EnrichmentTask._stage_provider is None:
            gates = Gates(self.sessions, self.settings)
            EnrichmentTask._stage_provider = ExperimentProvider(self.provider, gates)
        return EnrichmentTask._stage_provider

    def tenant_scope(self, tenant: str | None) -> tuple[bool, int | None]:
        """(known, id) for a task's tenant name, in the task call's one lookup: (True, None)
        for all tenants; (False, None) and one error line (no traceback) for a name that does
        not exist, the usual mistake in a hand-typed `celery call`."""
        if tenant is None:
            return True, None
        with self.sessions() as session:
            found = tenants.by_name(session, tenant)
        if found is not None:
            return True, found.id
        log.error("task.unknown_tenant", tenant=tenant, hint="check the name: enrichment status")
        return False, None

    def __call__(self, *args, **kwargs):
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(task=self.name, task_id=self.request.id)
        # A hand-typed call (`celery call`, send_task) is checked nowhere else: one line,
        # no traceback, no retry (arguments.py).
        wrong = arguments.problem(self.run, args, kwargs)
        if wrong is not None:
            expected = arguments.signature(self.run, self.name)
            log.error("task.bad_arguments", problem=wrong, expected=expected)
            return None
        return super().__call__(*args, **kwargs)


@signals.worker_process_shutdown.connect  # prefork children
@signals.worker_shutdown.connect  # threads/gevent pools: the provider lives in the main process
def _close_provider(**_kwargs) -> None:
    if EnrichmentTask._provider is not None:
        EnrichmentTask._provider.close()


def enqueue_chain(record_id: int, lease_token: str, countdown_s: float) -> None:
    """analyze -> classify -> resolve for one claimed record; the countdown delays the first."""
    chain(
        analyze.si(record_id, lease_token),
        classify.si(record_id, lease_token),
        resolve.si(record_id, lease_token),
    ).apply_async(countdown=countdown_s)


def ask_fleet(task_name: str, tenant: str, *, expires_s: float) -> str | None:
    """Send `task_name` for one tenant now, without the publish retries (the CLI's requeue and
    redeliver: the reset is committed, this only saves waiting for beat). None when sent,
    else why not in one phrase: the broker is down."""
    try:
        app.send_task(task_name, args=[tenant], expires=expires_s, retry=False)
    except (OperationalError, OSError) as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


def _stage(task: EnrichmentTask, stage: Stage, record_id: int, lease_token: str) -> str:
    structlog.contextvars.bind_contextvars(record_id=record_id, stage=stage)
    outcome = pipeline.run_stage(
        task.sessions,
        task.stage_provider,
        task.settings,
        stage=stage,
        record_id=record_id,
        lease_token=lease_token,
    )
    if outcome.kind != OutcomeKind.CONTINUE:
        # Stop this chain here; a retry continues in a fresh chain with a fresh lease.
        task.request.chain = None
    if outcome.kind == OutcomeKind.RETRY:
        enqueue_chain(record_id, outcome.lease_token, outcome.countdown_s)
    if outcome.kind in DECIDED:
        # The decision and its events are committed: push them now. Cheap to lose: an
        # expired or lost message leaves the events to beat's backstop delivery.
        deliver_task.apply_async(expires=task.settings.webhooks.interval_s)
    return outcome.kind


@app.task(base=EnrichmentTask, bind=True, name="enrichment.analyze")
def analyze(self, record_id: int, lease_token: str) -> str:
    return _stage(self, Stage.ANALYZE, record_id, lease_token)


@app.task(base=EnrichmentTask, bind=True, name="enrichment.classify")
def classify(self, record_id: int, lease_token: str) -> str:
    return _stage(self, Stage.CLASSIFY, record_id, lease_token)


@app.task(base=EnrichmentTask, bind=True, name="enrichment.resolve")
def resolve(self, record_id: int, lease_token: str) -> str:
    return _stage(self, Stage.RESOLVE, record_id, lease_token)


@app.task(base=EnrichmentTask, bind=True, name="enrichment.sweep")
def sweep(self, tenant: str | None = None) -> int:
    """Claim what the fleet starts before the next sweep (all tenants, or one by name) and
    enqueue their chains."""
    known, tenant_id = self.tenant_scope(tenant)
    if not known:
        return 0
    # Redis lost its messages: free every lease now, not after its TTL (broker_watch.py).
    expired = broker_watch.recover_if_lost(self.settings.broker_url, self.sessions, self.settings)
    if expired is not None:
        log.warning("sweep.broker_lost", expired=expired)
    # A Message Batch whose submit died frees its records here too, not only in a batches
    # run that a big apply may hold for minutes (batches/apply.py).
    batch_apply.give_up_lost(self.sessions, self.settings)
    # One claim, sized to what the fleet starts before the next sweep: the broker queue
    # stays shallow and the database keeps deciding the order (selection.py).
    with self.sessions.begin() as session:
        report = selection.sweep_for_fleet(session, self.settings, tenant_id=tenant_id)
    # Enqueued only after the claim committed: a lost enqueue just waits for the lease.
    for claim in report.claims:
        enqueue_chain(claim.record_id, claim.lease_token, claim.countdown_s)
    log.info("sweep.claimed", tenant=tenant, claimed=len(report.claims), size=report.size)
    return len(report.claims)


# Applying a big batch takes minutes (about 10 ms a record: 100,000 in some 17 min); the
# fleet's time limits are sized for one AI call. A run killed anyway repeats nothing.
@app.task(
    base=EnrichmentTask,
    bind=True,
    name="enrichment.batches",
    soft_time_limit=3600,
    time_limit=3900,
)
def batches_task(self) -> int:
    """Message Batches: apply ended batches, poll the ones in flight, submit the backlogs
    that go by batch (enrichment/batches). Only the anthropic provider has batches."""
    provider = self.provider
    if not isinstance(provider, AnthropicProvider):
        return 0
    with db.exclusive(self.engine, batches.LOCK_KEY) as mine:
        if not mine:  # another run is at it (a big apply outlasts the interval)
            return 0
        applied = batch_apply.poll_and_apply(self.sessions, provider, self.settings)
        # While the provider's breaker is open nothing new is sent (core/breaker.py).
        made = []
        if not breaker_store.is_closed(self.engine, self.settings):
            log.info("batches.paused", reason="provider breaker open")
        else:
            made = batch_submit.submit_due(
                self.sessions, provider, self.settings, to_chain=enqueue_chain
            )
    if applied or made:
        log.info("batches.done", submitted=len(made), **applied)
    if applied["done"] or applied["escalated"]:
        deliver_task.apply_async(expires=self.settings.webhooks.interval_s)
    return len(made)


@app.task(base=EnrichmentTask, bind=True, name="enrichment.requeue")
def requeue(self, tenant: str, record_id: int | None = None) -> int:
    """Reset a tenant's (or one record's) escalated/failed records and sweep them now."""
    known, tenant_id = self.tenant_scope(tenant)
    if not known:
        return 0
    with self.sessions.begin() as session:
        reset = selection.requeue(session, tenant_id, record_id=record_id)
        if reset and tenant_id is not None:
            subject = None if record_id is None else str(record_id)
            audit.record(
                session, tenant_id, CALLED, audit.REQUEUED, subject, record_id=record_id,
                reset=reset,
            )  # fmt: skip
    log.info("requeue.reset", tenant=tenant, record_id=record_id, reset=reset)
    # A kill here loses only the sweep.delay: the reset records are due and unleased, and
    # beat's next sweep claims them (tests/test_crash_points.py).
    crash_point("requeue.after_reset")
    sweep.delay(tenant)
    return reset


@app.task(base=EnrichmentTask, bind=True, name="enrichment.monitor")
def monitor_task(self) -> int:
    """Snapshot the tenants that are due (every tick while a warning fires for one, else
    every interval: metrics/cadence.py), evaluate alerts, send them on their routes."""
    settings = self.settings
    pace = cadence.Pace.of(settings)
    snapshots = monitor.run_monitor(self.sessions, settings, pace=pace)
    deliveries = dispatch.run_alerts(self.sessions, snapshots, settings)
    pages = provider_page.run(self.sessions, settings)  # the fleet's own: provider_down
    log.info("monitor.done", tenants=len(snapshots), notified=len(deliveries), pages=len(pages))
    return len(snapshots)


@app.task(base=EnrichmentTask, bind=True, name="enrichment.calibrate")
def calibrate_task(self) -> int:
    """Refit the tenants' calibration maps where enough new audit reviews arrived, and move
    the threshold of tenants with auto_threshold (reviews/refit.py)."""
    done = refit.run_refit(self.sessions, self.settings)
    if done:
        log.info("calibrate.done", tenants=len(done), maps=sum(len(r.fitted) for r in done))
    return len(done)


# ENRICHMENT_PRUNE_MAX_S (at most 1500 s) bounds a run; these limits only catch a stuck one.
@app.task(
    base=EnrichmentTask, bind=True, name="enrichment.prune", soft_time_limit=1800, time_limit=1900
)
def prune_task(self) -> int:
    """Remove history past retention, a short chunk at a time, archiving first when
    ENRICHMENT_ARCHIVE_DIR is set (enrichment/history/pruner.py); one run at a time."""
    settings = self.settings
    config = settings.retention
    with db.exclusive(self.engine, pruner.LOCK_KEY) as mine:
        if not mine:  # the previous run, or an `enrichment prune`, is at it
            return 0
        report = pruner.prune(
            self.sessions, config, archive_dir=settings.archive_dir, max_s=config.prune_max_s
        )
    if report.removed:
        log.info("prune.done", complete=report.complete, chunks=report.chunks, **report.removed)
    return sum(report.removed.values())


@app.task(
    base=EnrichmentTask, bind=True, name="enrichment.partitions", soft_time_limit=1800,
    time_limit=1900,
)  # fmt: skip
def partitions_task(self) -> int:
    """Make the history's time partitions ahead and drop those past retention (PostgreSQL;
    a no-op on SQLite; enrichment/history/partitions.py, retire.py); the partitions dropped.
    Retiring takes the pruner's lock: the two never work on one partition at once."""
    settings = self.settings
    partitions.ensure(self.engine)
    with db.exclusive(self.engine, pruner.LOCK_KEY) as mine:
        if not mine:  # the pruner is at it: the next run retires
            return 0
        done = retire.retire(self.engine, settings.retention, archive_dir=settings.archive_dir)
    return len(done.dropped)


@app.task(base=EnrichmentTask, bind=True, name="enrichment.deliver")
def deliver_task(self, tenant: str | None = None) -> int:
    """POST due outbox events to their tenants' webhooks (all tenants, or one by name)."""
    known, tenant_id = self.tenant_scope(tenant)
    if not known:
        return 0
    report = deliver.deliver_due(self.sessions, self.settings.webhooks, tenant_id=tenant_id)
    if report.rounds:
        log.info("deliver.done", tenant=tenant, **vars(report))
    return report.delivered


@app.task(base=EnrichmentTask, bind=True, name="enrichment.redeliver")
def redeliver_task(self, tenant: str) -> int:
    """Make a tenant's dead and stopped events pending again (attempts 0) and send them now."""
    known, tenant_id = self.tenant_scope(tenant)
    if not known:
        return 0
    with self.sessions.begin() as session:
        reset = deliver.redeliver(session, tenant_id)
        if reset and tenant_id is not None:
            audit.record(session, tenant_id, CALLED, audit.REDELIVERED, reset=reset)
    log.info("redeliver.reset", tenant=tenant, reset=reset)
    deliver_task.delay(tenant)
    return reset
