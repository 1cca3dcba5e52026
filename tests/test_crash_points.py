"""A process SIGKILLed between any two commits leaves nothing stuck.

Given an operation that spans several transactions (requeue, delivery, ingest) run for real
in a subprocess (tests/crash_runner.py) with one crash point armed
(enrichment.core.crashpoints), when the process dies there (returncode -9), then no record is
leased past a chain's lease without a batch that holds it, every record is claimable again
within one sweep interval plus a chain's lease (the clock moved forward, or short settings),
and the records finish. A review decision is one transaction: a kill inside it leaves nothing
at all. Message Batches' submit and apply: test_crash_points_batches.py, with these helpers.

Real PostgreSQL, the fake Anthropic server and a local webhook receiver; nothing mocked.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from enrichment.core.crashpoints import ENV_VAR, armed
from enrichment.core.due import chain_lease_s
from enrichment.core.models import (
    EnrichmentAttempt,
    ExceptionRecord,
    OutboxEvent,
    Review,
    Tenant,
    utcnow,
)
from enrichment.core.selection import claim_due
from enrichment.core.settings import WebhookConfig
from enrichment.delivery.deliver import deliver_due, lease_s
from enrichment.ingestion.ingest import ingest_file
from enrichment.reviews import decide, queue
from enrichment.tooling import generate
from enrichment.tooling.drill.invariants import unheld_long_leases
from enrichment.tooling.processes import ROOT, scrubbed_env, wait_for
from enrichment.tooling.receiver import Receiver
from tests import fake_api
from tests.conftest import REDIS_URL
from tests.factories import make_record, make_tenant
from tests.test_delivery import connect, enrich
from tests.test_pipeline import run_chain

KEY = fake_api.KEY
R = ExceptionRecord
DAMAGED = "Parcel arrived crushed and torn, contents damaged."
# Delivery's claim lease is 9 timeouts (deliver.lease_s): 0.9 s here.
WEBHOOKS = WebhookConfig(timeout_s=0.1, backoff_scale=0.0001, allow_private=True)


fake, batch_settings, provider = fake_api.fake, fake_api.batch_settings, fake_api.provider


@pytest.fixture
def env(pg_url, fake) -> dict[str, str]:
    """A worker's environment: the test database, the fake, the test's timings."""
    return scrubbed_env(
        DATABASE_URL=pg_url,
        CELERY_BROKER_URL=REDIS_URL,
        ENRICHMENT_AI_PROVIDER="anthropic",
        ANTHROPIC_API_KEY=KEY,
        ANTHROPIC_BASE_URL=fake.base_url,
        ENRICHMENT_ANTHROPIC_MAX_RETRIES="0",
        ENRICHMENT_AI_RPM="0",
        ENRICHMENT_AUDIT_RATE="0",
        ENRICHMENT_WEBHOOK_ALLOW_PRIVATE="1",
        ENRICHMENT_WEBHOOK_TIMEOUT_S=str(WEBHOOKS.timeout_s),
        ENRICHMENT_WEBHOOK_BACKOFF_SCALE=str(WEBHOOKS.backoff_scale),
    )


def crash(point: str, operation: str, env: dict[str, str], **args) -> datetime:
    """Run `operation` in a subprocess with `point` armed; it must die there. Returns when
    it started: every bound measured from then is a little stricter than from the kill."""
    cmd = [sys.executable, "-m", "tests.crash_runner", operation, json.dumps(args)]
    started = utcnow()
    done = subprocess.run(
        cmd, cwd=ROOT, env={**env, ENV_VAR: point}, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == -signal.SIGKILL, done.stdout[-2000:] + done.stderr[-3000:]
    assert f"crash_point: {point}" in done.stderr
    return started


def no_stuck_lease(factory, settings) -> None:
    """The drill's invariant now: nothing leased past a chain's lease without a batch."""
    until = utcnow() + timedelta(seconds=chain_lease_s(settings))
    with factory() as s:
        assert unheld_long_leases(s, until) == []


def assert_enriched_once(factory, ids) -> None:
    with factory() as s:
        records = s.scalars(select(R).where(R.id.in_(ids))).all()
        per_record = dict(
            s.execute(
                select(EnrichmentAttempt.record_id, func.count())
                .where(EnrichmentAttempt.record_id.in_(ids))
                .group_by(EnrichmentAttempt.record_id)
            ).all()
        )
    assert all(r.enriched_at is not None and r.lease_token is None for r in records)
    assert per_record == {rid: 3 for rid in ids}  # no stage applied twice


# -- the hook itself --------------------------------------------------------------------


def test_a_crash_point_is_armed_only_by_name(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert not armed("batch_submit.after_claim")
    monkeypatch.setenv(ENV_VAR, "deliver.after_claim, batch_submit.after_claim")
    assert armed("batch_submit.after_claim") and armed("deliver.after_claim")
    assert not armed("batch_submit") and not armed("batch_submit.after_store")


# -- requeue ----------------------------------------------------------------------------


def test_a_requeue_killed_before_its_sweep_is_sent_waits_only_for_beats_sweep(
    factory, provider, batch_settings, env
):
    with factory.begin() as s:
        tenant = make_tenant(s, "acme")
        ids = [
            make_record(s, tenant, notes=DAMAGED, escalated_at=utcnow(), escalation_reason="x",
                        enrichment_retry_count=6, next_attempt_at=utcnow() + timedelta(days=9)).id
            for _ in range(2)
        ]  # fmt: skip

    killed_at = crash("requeue.after_reset", "requeue", env, tenant="acme")

    no_stuck_lease(factory, batch_settings)
    with factory.begin() as s:  # beat's next sweep, one interval on
        next_sweep = killed_at + timedelta(seconds=batch_settings.sweep_interval_s)
        claims = claim_due(s, batch_settings, now=next_sweep)
    assert sorted(c.record_id for c in claims) == ids
    for c in claims:
        run_chain(factory, provider, batch_settings, c.record_id, c.lease_token)
    assert_enriched_once(factory, ids)


# -- delivery ---------------------------------------------------------------------------


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


def deliver_all(factory, receiver, n: int) -> None:
    """Beat's backstop delivery until every event is delivered: within the claim's lease
    (0.9 s) and a few seconds for the POSTs."""

    def delivered() -> bool:
        deliver_due(factory, WEBHOOKS)
        with factory() as s:
            return s.scalar(select(func.count()).where(OutboxEvent.status == "delivered")) == n

    wait_for(delivered, timeout_s=lease_s(WEBHOOKS) + 5, what="every event delivered")
    assert len(receiver.unique_ids()) == n


@pytest.mark.parametrize(
    "point", ["deliver.after_claim", "deliver.after_post", "deliver.after_record"]
)
def test_a_delivery_killed_at_each_boundary_sends_every_event_again_in_time(
    point, factory, settings, env, receiver
):
    connect(factory, "acme", receiver, WEBHOOKS)
    enrich(factory, settings, "acme", 2)
    with factory() as s:
        n = s.scalar(select(func.count()).select_from(OutboxEvent))

    crash(point, "deliver", env)

    # The pool POSTs side by side: by the kill, any number may have reached the receiver.
    sent = len(receiver.unique_ids())
    assert sent == 0 if point.endswith("after_claim") else sent >= 1
    with factory() as s:
        delivered = s.scalar(select(func.count()).where(OutboxEvent.status == "delivered"))
    assert delivered == (1 if point.endswith("after_record") else 0)
    deliver_all(factory, receiver, n)
    if point.endswith("after_post"):  # sent, never recorded: sent again, same webhook-id
        assert receiver.duplicates


# -- ingest -----------------------------------------------------------------------------


def test_an_ingest_killed_between_chunks_keeps_what_committed_and_a_replay_adds_the_rest(
    factory, provider, batch_settings, env, tmp_path
):
    path = tmp_path / "feed.jsonl"
    lines = list(generate.generate_lines("acme", 5, seed=3, id_prefix="crash"))
    for line in lines:
        line["exception"]["notes"] = DAMAGED
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))

    killed_at = crash("ingest.between_chunks", "ingest", env, path=str(path), chunk_size=2)

    with factory() as s:
        assert s.scalar(select(func.count()).select_from(R)) == 2
    report = ingest_file(factory, path)  # the replay
    assert (report.created, report.unchanged, report.rejected) == (3, 2, [])
    with factory.begin() as s:  # all due at once, unleased: the next sweep takes them
        claims = claim_due(s, batch_settings, now=killed_at)
    assert len(claims) == 5
    for c in claims:
        run_chain(factory, provider, batch_settings, c.record_id, c.lease_token)
    assert_enriched_once(factory, [c.record_id for c in claims])


# -- a review decision: one transaction -------------------------------------------------


def test_a_review_killed_before_its_commit_leaves_the_record_in_the_queue_untouched(factory, env):
    with factory.begin() as s:
        tenant = make_tenant(s, "acme")
        rec = make_record(s, tenant, notes=DAMAGED, escalated_at=utcnow(),
                          escalation_reason="low confidence")  # fmt: skip
        tenant_id, record_id = tenant.id, rec.id
    decision = dict(label="DAMAGED_PACKAGE", actions=["NOTIFY_CUSTOMER"])

    crash("review.before_commit", "review", env, tenant="acme", record_id=record_id, **decision)

    with factory() as s:
        assert queue.in_queue(s, tenant_id, record_id) is not None
        assert s.scalar(select(func.count()).select_from(Review)) == 0
        assert s.scalar(select(func.count()).select_from(OutboxEvent)) == 0
    with factory.begin() as s:  # the person submits again: it lands whole
        body = decide.ReviewIn(reviewer="ops", **decision)
        done = decide.submit(s, s.get(Tenant, tenant_id), record_id, body, actor="t")
    with factory() as s:
        types = s.scalars(select(OutboxEvent.type).order_by(OutboxEvent.id)).all()
        assert s.get(R, record_id).reviewed_at is not None
    assert done.new_actions == ["NOTIFY_CUSTOMER"]
    assert types == ["record.reviewed", "action.requested"]


def test_the_invariant_reports_a_long_lease_that_no_batch_holds(factory):
    """The drill's invariant query: a long lease with no unapplied batch row is reported;
    a chain's lease, or a long one that ran out, is not."""
    with factory.begin() as s:
        tenant = make_tenant(s, "acme")
        stuck = make_record(
            s, tenant, lease_token="t", lease_expires_at=utcnow() + timedelta(days=1)
        )
        make_record(s, tenant, lease_token="u", lease_expires_at=utcnow() + timedelta(seconds=5))
        stuck_id = stuck.id
    with factory() as s:
        assert unheld_long_leases(s, utcnow() + timedelta(minutes=16)) == [stuck_id]
    with factory.begin() as s:
        s.execute(update(R).where(R.id == stuck_id).values(lease_expires_at=utcnow()))
    with factory() as s:
        assert unheld_long_leases(s, utcnow() + timedelta(minutes=16)) == []
