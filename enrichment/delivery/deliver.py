"""Outbox delivery: claim due events, POST them, record each answer.

Delivery is at least once: a receiver dedupes on `webhook-id`, which is the same on every
attempt of one event. What this module holds to:

- A claim commits before any HTTP: it pushes `next_delivery_at` forward by a lease, so a
  second deliverer skips the event while it is in flight, and the event of a deliverer
  that died (SIGKILL) comes due again when the lease runs out.
- Per record, in order: an event is claimed only while no earlier event of its record is
  still pending. A stopped or dead earlier event no longer blocks.
- Only tenants with a webhook are pushed to; the others' events stay pending for the pull
  route (`events.py`).
- An answer is recorded only while the claim is still this run's (the lease value is the
  token), except a 2xx, which is recorded whenever the event is still pending.
- Logs name the tenant, the event id, the status and the error class: never the URL or
  the secret. Each POST also lands in the tenant's delivery log (core/delivery_log.py), in
  the transaction of its answer; each run prunes the logs of the tenants it sent to.
- During a secret rotation's overlap every POST carries two signatures (webhooks.py).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Select, exists, func, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from enrichment.core import delivery_log
from enrichment.core.backoff import retry_delay_s
from enrichment.core.crashpoints import crash_point
from enrichment.core.models import OutboxEvent, ResolutionAction, Tenant, utcnow
from enrichment.core.outbox import DEAD, DELIVERED, PENDING, STOPPED, body, webhook_id
from enrichment.core.settings import WebhookConfig
from enrichment.delivery import post, webhooks
from enrichment.delivery.backoff import STEPS_S

log = structlog.get_logger(__name__)

E = OutboxEvent
# POSTs in flight per deliverer run: one slow receiver must not hold up everyone else's.
POOL_SIZE = 16
# Claim rounds per run: a steady stream of new events cannot keep one run going forever.
MAX_ROUNDS = 50


@dataclass(frozen=True)
class Job:
    """One claimed event, ready to send. `lease_until` is the claim's token."""

    event_id: int
    tenant: str
    action_id: int | None
    attempts: int
    lease_until: datetime
    url: str
    secrets: tuple[str, ...]  # the signing secrets: two during a rotation's overlap
    body: str
    tenant_id: int
    event_type: str


@dataclass
class DeliveryReport:
    """What one `deliver_due` run did: events per outcome, and claim rounds. `lost`: answers
    not written because the claim had moved on (its lease ran out)."""

    delivered: int = 0
    retried: int = 0
    stopped: int = 0
    dead: int = 0
    released: int = 0
    rounds: int = 0
    lost: int = 0

    def count(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)


def lease_s(config: WebhookConfig) -> float:
    """How long a claim holds its events: every POST of a full batch through the pool,
    plus two timeouts of margin."""
    return config.timeout_s * (math.ceil(config.batch_size / POOL_SIZE) + 2)


def deliver_due(
    factory: sessionmaker[Session],
    config: WebhookConfig,
    *,
    tenant_id: int | None = None,
    max_rounds: int = MAX_ROUNDS,
) -> DeliveryReport:
    """Claim, send and record, round after round, until no event is due (all tenants with a
    webhook, or one). Each claim and each answer is its own short transaction."""
    report = DeliveryReport()
    sent_to: set[int] = set()
    for _round in range(max_rounds):
        with factory.begin() as session:
            jobs = claim(session, config, tenant_id=tenant_id)
        if not jobs:
            break
        sent_to.update(job.tenant_id for job in jobs)
        crash_point("deliver.after_claim")
        report.rounds += 1
        deadline = time.monotonic() + lease_s(config) - 2 * config.timeout_s
        for job, answer in _send_all(jobs, config, deadline):
            # A kill from the claim to its answer's commit leaves the event pending under
            # the claim's lease: it comes due again, and is sent again with the same
            # webhook-id (tests/test_crash_points.py).
            crash_point("deliver.after_post")
            with factory.begin() as session:
                report.count(record(session, job, answer, config))
            crash_point("deliver.after_record")
    with factory.begin() as session:
        for tid in sorted(sent_to):
            delivery_log.prune(session, tid)
    return report


def claimable(now: datetime) -> ColumnElement[bool]:
    """Pending, due, and no earlier pending event of the same record (per-record order)."""
    earlier = aliased(OutboxEvent)
    blocked = exists().where(
        earlier.record_id == E.record_id, earlier.id < E.id, earlier.status == PENDING
    )
    return (E.status == PENDING) & (E.next_delivery_at <= now) & ~blocked


def claim(
    session: Session,
    config: WebhookConfig,
    *,
    tenant_id: int | None = None,
    now: datetime | None = None,
) -> list[Job]:
    """Claim up to `batch_size` due events of tenants with a webhook, in one statement.

    The inner SELECT takes FOR UPDATE SKIP LOCKED (PostgreSQL), so concurrent deliverers
    split the due events instead of waiting or taking the same ones; the UPDATE re-checks
    that each is still pending and due. The caller commits before sending anything."""
    now = now or utcnow()
    pushed = _pushed_tenants(session, tenant_id)
    if not pushed:
        return []
    lease_until = now + timedelta(seconds=lease_s(config))
    pick = (
        select(E.id)
        # The tenant ids as values, not a join: the pull-only tenants' events stay pending
        # for good, and a join would walk all of them on every claim; with the ids the
        # planner reads the pushed tenants' open events only (ix_outbox_events_open).
        .where(claimable(now), E.tenant_id.in_(pushed))
        .order_by(E.next_delivery_at, E.id)
        .limit(config.batch_size)
        .with_for_update(skip_locked=True, of=E)
    )
    stmt = (
        update(E)
        .where(_id_in(session, pick), E.status == PENDING, E.next_delivery_at <= now)
        .values(next_delivery_at=lease_until)
        .returning(E.id, E.tenant_id, E.action_id, E.type, E.data, E.created_at, E.attempts)
        .execution_options(synchronize_session=False)
    )
    rows = session.execute(stmt).all()
    targets = _targets(session, {r.tenant_id for r in rows})
    return [
        _job(r, targets[r.tenant_id], lease_until, now) for r in sorted(rows, key=lambda r: r.id)
    ]


def _pushed_tenants(session: Session, tenant_id: int | None) -> list[int]:
    """Tenants with a webhook (all, or `tenant_id` if it has one)."""
    stmt = select(Tenant.id).where(Tenant.webhook_url.is_not(None))
    if tenant_id is not None:
        stmt = stmt.where(Tenant.id == tenant_id)
    return list(session.scalars(stmt))


def _id_in(session: Session, pick: Select) -> ColumnElement[bool]:
    """`id = ANY(ARRAY(pick))` on PostgreSQL (see selection._id_in: the picked ids are read
    through the primary key); `IN` elsewhere."""
    if session.get_bind().dialect.name == "postgresql":
        return E.id == func.any(func.array(pick.scalar_subquery()))
    return E.id.in_(pick.scalar_subquery())


def _targets(session: Session, tenant_ids: set[int]) -> dict[int, Any]:
    T = Tenant
    rows = session.execute(
        select(
            T.id, T.name, T.webhook_url, T.webhook_secret, T.webhook_previous_secret,
            T.webhook_previous_until,
        ).where(T.id.in_(tenant_ids))
    ).all()  # fmt: skip
    return {r.id: r for r in rows}


def _job(row: Any, tenant: Any, lease_until: datetime, now: datetime) -> Job:
    return Job(
        event_id=row.id,
        tenant=tenant.name,
        action_id=row.action_id,
        attempts=row.attempts,
        lease_until=lease_until,
        url=tenant.webhook_url,
        secrets=webhooks.signing_secrets(
            tenant.webhook_secret,
            tenant.webhook_previous_secret,
            tenant.webhook_previous_until,
            now,
        ),
        body=body(row.type, row.data, row.created_at),
        tenant_id=tenant.id,
        event_type=row.type,
    )


def _send_all(
    jobs: list[Job], config: WebhookConfig, deadline: float
) -> Iterator[tuple[Job, post.Answer]]:
    """Each job's answer as it comes. A job not started before `deadline` is not sent: its
    lease could run out mid-POST and another deliverer would send it at the same time."""

    def attempt(job: Job) -> post.Answer:
        if time.monotonic() > deadline:
            return post.Answer(post.SKIPPED)
        if not job.secrets:
            return post.Answer(post.STOP, None, "no signing secret: set the webhook again")
        try:
            return post.send(job.url, job.secrets, webhook_id(job.event_id), job.body, config)
        except Exception as exc:  # a bug must not strand the rest of the batch until the lease
            log.error("delivery.unexpected_error", event_id=job.event_id, error=type(exc).__name__)
            return post.Answer(post.RETRY, None, type(exc).__name__)

    with ThreadPoolExecutor(max_workers=min(POOL_SIZE, len(jobs))) as pool:
        futures = {pool.submit(attempt, job): job for job in jobs}
        for done in as_completed(futures):
            yield futures[done], done.result()


def record(
    session: Session,
    job: Job,
    answer: post.Answer,
    config: WebhookConfig,
    *,
    now: datetime | None = None,
    rand: Callable[[], float] = random.random,
) -> str:
    """Write one answer, and its line in the tenant's delivery log; returns the report field
    it counts as."""
    now = now or utcnow()
    outcome = _write(session, job, answer, config, now, rand)
    if answer.kind != post.SKIPPED:
        delivery_log.add(
            session, job.tenant_id, job.event_type, outcome, event_id=job.event_id,
            status_code=answer.status, error=answer.error, duration_s=answer.duration_s, now=now,
        )  # fmt: skip
    return outcome


def _write(
    session: Session,
    job: Job,
    answer: post.Answer,
    config: WebhookConfig,
    now: datetime,
    rand: Callable[[], float],
) -> str:
    if answer.kind == post.DELIVERED:
        return _delivered(session, job, answer, now)
    values = (
        {"next_delivery_at": now}
        if answer.kind == post.SKIPPED
        else after_failure(job.attempts + 1, answer, config, now, rand=rand)
    )
    mine = (E.id == job.event_id, E.status == PENDING, E.next_delivery_at == job.lease_until)
    if session.execute(update(E).where(*mine).values(**values)).rowcount != 1:
        log.info("delivery.claim_lost", tenant=job.tenant, event_id=job.event_id)
        return "lost"
    outcome = _outcome(answer, values)
    _log(outcome, job, answer, values)
    return outcome


def after_failure(
    attempts: int,
    answer: post.Answer,
    config: WebhookConfig,
    now: datetime,
    *,
    rand: Callable[[], float] = random.random,
) -> dict[str, Any]:
    """The event's new columns after its `attempts`-th POST failed (pure): stopped for a
    refusal, dead once `max_attempts` are used up, else due again after the backoff."""
    values: dict[str, Any] = {"attempts": attempts, "last_error": answer.error}
    if answer.kind == post.STOP:
        return {**values, "status": STOPPED}
    if attempts >= config.max_attempts:
        return {**values, "status": DEAD}
    delay_s = retry_delay_s(attempts, steps=STEPS_S, scale=config.backoff_scale, rand=rand)
    return {**values, "next_delivery_at": now + timedelta(seconds=delay_s)}


def _delivered(session: Session, job: Job, answer: post.Answer, now: datetime) -> str:
    """A 2xx counts whenever the event is still pending, even if its claim expired: the
    receiver has it. An action.requested event moves its action to DELIVERED with it."""
    landed = session.execute(
        update(E)
        .where(E.id == job.event_id, E.status == PENDING)
        .values(status=DELIVERED, delivered_at=now, attempts=E.attempts + 1, last_error=None)
    ).rowcount
    if landed != 1:
        return "lost"
    if job.action_id is not None:
        session.execute(
            update(ResolutionAction)
            .where(ResolutionAction.id == job.action_id, ResolutionAction.status == "RECORDED")
            .values(status="DELIVERED", delivered_at=now)
        )
    log.info("delivery.delivered", tenant=job.tenant, event_id=job.event_id, status=answer.status)
    return "delivered"


def _outcome(answer: post.Answer, values: dict[str, Any]) -> str:
    if answer.kind == post.SKIPPED:
        return "released"
    return {STOPPED: "stopped", DEAD: "dead"}.get(values.get("status", ""), "retried")


def _log(outcome: str, job: Job, answer: post.Answer, values: dict[str, Any]) -> None:
    if outcome == "released":
        return
    # A retry is expected and quiet; a stop wants a person; a dead event is an error.
    level = {"retried": "info", "stopped": "warning", "dead": "error"}[outcome]
    getattr(log, level)(
        f"delivery.{outcome}",
        tenant=job.tenant,
        event_id=job.event_id,
        status=answer.status,
        error=answer.error,
        attempts=values["attempts"],
    )


def redeliver(session: Session, tenant_id: int, *, now: datetime | None = None) -> int:
    """Make a tenant's dead and stopped events pending again (attempts 0, due now).
    Returns how many. The caller triggers a delivery after commit."""
    return len(redeliver_ids(session, tenant_id, now=now))


def redeliver_ids(session: Session, tenant_id: int, *, now: datetime | None = None) -> list[int]:
    """`redeliver`, returning the ids of the events made pending again."""
    stmt = (
        update(E)
        .where(E.tenant_id == tenant_id, E.status.in_((DEAD, STOPPED)))
        .values(status=PENDING, attempts=0, next_delivery_at=now or utcnow(), last_error=None)
        .execution_options(synchronize_session=False)
    )
    return list(session.scalars(stmt.returning(E.id)))
