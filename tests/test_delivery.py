"""Outbox delivery to real HTTP receivers on 127.0.0.1, of events from real decisions.

Given records enriched through the real pipeline (the scripted provider, or the local one in
a real worker) and a tenant webhook pointing at `enrichment.tooling.receiver.Receiver`, when
delivery runs (the domain function, the in-process worker, or worker subprocesses), then
every event arrives at least once, signed, in order per record, only at its own tenant.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from dataclasses import replace
from datetime import timedelta

import pytest
import structlog
from sqlalchemy import select, update

from enrichment.core import audit, tenants
from enrichment.core.backoff import retry_delay_s, total_wait_s
from enrichment.core.errors import PermanentError
from enrichment.core.models import OutboxEvent, ResolutionAction, utcnow
from enrichment.core.outbox import body, webhook_id
from enrichment.core.selection import claim_due
from enrichment.core.settings import WebhookConfig, get_settings
from enrichment.delivery import post, webhooks
from enrichment.delivery.backoff import STEPS_S
from enrichment.delivery.deliver import after_failure, deliver_due, redeliver
from enrichment.tooling.receiver import Receiver
from tests.conftest import REDIS_URL
from tests.factories import make_record, make_tenant
from tests.fleet import fleet_env, start_beat, start_worker, stop_all, wait_for
from tests.scripted import ScriptedProvider
from tests.test_pipeline import run_chain

CONFIG = WebhookConfig(timeout_s=0.5, backoff_scale=0.0001, allow_private=True)
# What the worker processes read from the environment: the same knobs as CONFIG.
WORKER_ENV = dict(
    ENRICHMENT_WEBHOOK_ALLOW_PRIVATE="1",
    ENRICHMENT_WEBHOOK_TIMEOUT_S="0.5",
    ENRICHMENT_WEBHOOK_BACKOFF_SCALE="0.0001",
    ENRICHMENT_WEBHOOK_INTERVAL_S="0.5",
)
DAMAGED = dict(
    reason_code="DAMAGE",
    notes="Customer says the box arrived crushed and the mug inside is broken.",
    events=[
        {"source": "carrier", "type": "damage_reported", "at": "2026-11-22T15:05:00Z",
         "detail": "parcel crushed, contents broken"},
    ],
)  # fmt: skip


# -- helpers shared with test_events_api and test_webhook_signing ------------------------------


def enrich(factory, settings, tenant: str, n: int, provider=None) -> list[int]:
    """`n` new records of `tenant` (made if new), decided by the real pipeline."""
    with factory.begin() as s:
        t = tenants.by_name(s, tenant) or make_tenant(s, tenant)
        ids = [make_record(s, t).id for _ in range(n)]
        tenant_id = t.id
    with factory.begin() as s:
        claims = claim_due(s, settings, tenant_id=tenant_id)
    for c in claims:
        run_chain(factory, provider or ScriptedProvider(), settings, c.record_id, c.lease_token)
    return ids


def connect(factory, tenant: str, receiver: Receiver, config=CONFIG) -> str:
    """Point `tenant`'s webhook (made if new) at `receiver`; the receiver learns the secret."""
    with factory.begin() as s:
        t = tenants.by_name(s, tenant) or make_tenant(s, tenant)
        receiver.secret = webhooks.configure(t, receiver.url, config)
    return receiver.secret


def events_of(factory, tenant: str | None = None) -> list[OutboxEvent]:
    with factory() as s:
        stmt = select(OutboxEvent).order_by(OutboxEvent.id)
        if tenant is not None:
            stmt = stmt.where(OutboxEvent.tenant_id == tenants.require(s, tenant).id)
        return list(s.scalars(stmt))


def hook_ids(events) -> set[str]:
    return {webhook_id(e.id) for e in events}


def deliver_until(factory, config, cond, *, timeout_s=30.0, what="delivery done"):
    """Run the domain deliverer (as beat would, only faster) until `cond()` holds."""

    def step() -> bool:
        deliver_due(factory, config)
        return cond()

    wait_for(step, timeout_s=timeout_s, what=what)


@pytest.fixture
def receivers():
    """`receivers(**kw)` starts a Receiver; all are closed at the end."""
    made = []

    def make(**kw) -> Receiver:
        made.append(Receiver(**kw).__enter__())
        return made[-1]

    yield make
    for r in made:
        r.close()


# -- pure decisions -------------------------------------------------------------------------


def test_the_retry_schedule_is_jittered_and_spans_about_23_hours():
    for n, step in enumerate(STEPS_S, start=1):
        assert retry_delay_s(n, steps=STEPS_S, rand=lambda: 0.0) == pytest.approx(step * 0.9)
        assert retry_delay_s(n, steps=STEPS_S, rand=lambda: 1.0) == pytest.approx(step * 1.1)
    assert retry_delay_s(20, steps=STEPS_S, scale=0.5, rand=lambda: 0.5) == STEPS_S[-1] * 0.5
    assert 22 * 3600 < total_wait_s(8, steps=STEPS_S) < 24 * 3600


def test_answers_are_classified_and_failures_decide_the_next_columns():
    assert [post.classify(c).kind for c in (200, 204, 429, 500, 503, 301, 400, 410)] == [
        "delivered", "delivered", "retry", "retry", "retry", "stop", "stop", "stop",
    ]  # fmt: skip
    now = utcnow()
    retry = after_failure(2, post.Answer(post.RETRY, 503, "HTTP 503"), CONFIG, now)
    assert retry["attempts"] == 2 and "status" not in retry and retry["next_delivery_at"] > now
    # The webhook's own table of steps (its 3rd step is 30 m; a record's is 15 m).
    third = after_failure(
        3, post.Answer(post.RETRY, 503, "HTTP 503"), CONFIG, now, rand=lambda: 0.5
    )
    assert third["next_delivery_at"] == now + timedelta(seconds=1800 * CONFIG.backoff_scale)
    stop = after_failure(1, post.Answer(post.STOP, 404, "HTTP 404"), CONFIG, now)
    assert stop["status"] == "stopped" and stop["last_error"] == "HTTP 404"
    dead = after_failure(8, post.Answer(post.RETRY, None, "TimeoutError"), CONFIG, now)
    assert dead["status"] == "dead" and dead["last_error"] == "TimeoutError"


# -- the domain function against real receivers ---------------------------------------------


def test_every_decision_is_delivered_once_and_its_actions_become_delivered(
    any_factory, settings, receivers
):
    factory = any_factory
    r = receivers()
    connect(factory, "acme", r)
    enrich(factory, settings, "acme", 4)
    enrich(factory, settings, "acme", 1, ScriptedProvider(classify=[PermanentError("refused")]))
    events = events_of(factory)
    assert [e.type for e in events].count("record.escalated") == 1 and len(events) == 13

    report = deliver_due(factory, CONFIG)

    assert report.delivered == 13 and r.unique_ids() == hook_ids(events)
    assert r.duplicates == [] and r.bad_signatures == 0 and len(r.requests) == 13
    for e in events:
        assert r.events[webhook_id(e.id)] == json.loads(body(e.type, e.data, e.created_at))
    after = events_of(factory)
    assert all(e.status == "delivered" and e.attempts == 1 and e.delivered_at for e in after)
    with factory() as s:
        actions = s.scalars(select(ResolutionAction)).all()
    assert len(actions) == 8 and all(a.status == "DELIVERED" and a.delivered_at for a in actions)
    assert deliver_due(factory, CONFIG).delivered == 0 and len(r.requests) == 13


def test_a_4xx_stops_the_event_and_leaves_the_action_recorded(factory, settings, receivers):
    r = receivers(status=410)
    secret = connect(factory, "acme", r)
    enrich(factory, settings, "acme", 2)

    with structlog.testing.capture_logs() as logs:
        deliver_due(factory, CONFIG)

    events = events_of(factory)
    assert {(e.status, e.attempts, e.last_error) for e in events} == {("stopped", 1, "HTTP 410")}
    assert len(r.requests) == len(events) == 6  # a stopped event does not block the next
    with factory() as s:
        assert {a.status for a in s.scalars(select(ResolutionAction))} == {"RECORDED"}
    stops = [e for e in logs if e["event"] == "delivery.stopped"]
    assert len(stops) == 6 and {(e["tenant"], e["status"]) for e in stops} == {("acme", 410)}
    port = r.url.split(":")[2].split("/")[0]
    assert port not in str(logs) and secret not in str(logs) and "hooks" not in str(logs)


def test_retries_run_out_into_dead_and_last_error_names_no_url(factory, settings, receivers):
    r = receivers(fail_rate=1.0, faults=("500",))
    connect(factory, "acme", r)
    enrich(factory, settings, "acme", 1)
    config = replace(CONFIG, max_attempts=3)

    deliver_until(factory, config, lambda: {e.status for e in events_of(factory)} == {"dead"})

    events = events_of(factory)
    assert {(e.attempts, e.last_error) for e in events} == {(3, "HTTP 500")}
    per_id = Counter(req.webhook_id for req in r.requests)
    assert per_id == dict.fromkeys(hook_ids(events), 3) and r.unique_ids() == set()
    with factory() as s:
        assert redeliver(s, tenants.require(s, "acme").id) == 3
        s.commit()
    assert {(e.status, e.attempts, e.last_error) for e in events_of(factory)} == {
        ("pending", 0, None)
    }


def test_order_holds_per_record_and_only_a_pending_earlier_event_blocks(
    factory, settings, receivers
):
    r = receivers(fail_rate=0.5, faults=("500",), seed=3)
    connect(factory, "acme", r)
    enrich(factory, settings, "acme", 4)

    deliver_until(factory, CONFIG, lambda: r.unique_ids() == hook_ids(events_of(factory)))

    assert r.failures > 0
    record_of = {webhook_id(e.id): (e.record_id, e.id) for e in events_of(factory)}
    acked: set[int] = set()
    for req in r.requests:
        record, event_id = record_of[req.webhook_id]
        earlier = {i for rec, i in record_of.values() if rec == record and i < event_id}
        assert earlier <= acked, f"{req.webhook_id} was sent before an earlier event's 2xx"
        if req.answer == "200":
            acked.add(event_id)


def test_a_stopped_earlier_event_does_not_block_but_a_pending_one_does(
    factory, settings, receivers
):
    r = receivers()
    connect(factory, "acme", r)
    stopped_rec, waiting_rec = enrich(factory, settings, "acme", 2)
    E = OutboxEvent
    with factory.begin() as s:
        first = E.type == "record.enriched"
        s.execute(update(E).where(first, E.record_id == stopped_rec).values(status="stopped"))
        later = utcnow() + timedelta(hours=1)
        s.execute(update(E).where(first, E.record_id == waiting_rec).values(next_delivery_at=later))

    deliver_due(factory, CONFIG)

    sent = {e.record_id: [] for e in events_of(factory)}
    for e in events_of(factory):
        sent[e.record_id].append((e.type, webhook_id(e.id) in r.unique_ids()))
    assert sent[stopped_rec] == [("record.enriched", False)] + [("action.requested", True)] * 2
    assert sent[waiting_rec] == [("record.enriched", False)] + [("action.requested", False)] * 2


def test_a_tenant_never_receives_another_tenants_events(factory, settings, receivers):
    ra, rb = receivers(), receivers()
    connect(factory, "a-3pl", ra)
    connect(factory, "b-3pl", rb)
    for name in ("a-3pl", "b-3pl", "c-pulls"):
        enrich(factory, settings, name, 2)
    with factory() as s:
        a_id = tenants.require(s, "a-3pl").id

    deliver_due(factory, CONFIG, tenant_id=a_id)
    assert ra.unique_ids() == hook_ids(events_of(factory, "a-3pl")) and rb.requests == []
    deliver_due(factory, CONFIG)

    for r, name in ((ra, "a-3pl"), (rb, "b-3pl")):
        assert r.unique_ids() == hook_ids(events_of(factory, name)) and r.bad_signatures == 0
        assert {body["data"]["tenant"] for body in r.events.values()} == {name}
    pulled_only = events_of(factory, "c-pulls")
    assert pulled_only and {(e.status, e.attempts) for e in pulled_only} == {("pending", 0)}


# -- real workers ---------------------------------------------------------------------------


@pytest.fixture
def worker_webhooks():
    """The in-process worker's tasks read these settings (get_settings) while the test runs."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in WORKER_ENV.items():
            patch.setenv(name, value)
        get_settings.cache_clear()
        yield
    get_settings.cache_clear()


def test_a_flaky_receiver_gets_every_event_through_a_real_worker(
    inproc_worker, worker_webhooks, factory, settings, receivers
):
    from workers.tasks import deliver_task, enqueue_chain

    r = receivers(fail_rate=0.3, seed=1, hang_s=1.0)
    connect(factory, "demo-3pl", r)
    with factory.begin() as s:
        t = make_tenant(s, "other")
        [make_record(s, tenants.require(s, "demo-3pl"), **DAMAGED) for _ in range(8)]
        make_record(s, t, **DAMAGED)
    with factory.begin() as s:
        claims = claim_due(s, settings)
    for c in claims:  # each chain enqueues a delivery once it decides
        enqueue_chain(c.record_id, c.lease_token, c.countdown_s)
    ticks = []

    def all_delivered() -> bool:
        if not ticks or time.monotonic() - ticks[-1] > 0.5:  # beat's backstop, sped up
            ticks.append(time.monotonic())
            deliver_task.apply_async()
        mine = events_of(factory, "demo-3pl")
        decided = {e.record_id for e in mine}
        return len(decided) == 8 and {e.status for e in mine} == {"delivered"}

    wait_for(all_delivered, timeout_s=120, what="every event delivered through the worker")

    mine = events_of(factory, "demo-3pl")
    assert r.unique_ids() == hook_ids(mine) and r.failures > 0 and r.bad_signatures == 0
    assert set(r.duplicates) <= r.unique_ids() and r.mismatched == []
    bodies = {json.dumps(b, sort_keys=True) for b in r.events.values()}
    assert len(bodies) == len(r.events)  # no event came twice under different ids
    assert {e.status for e in events_of(factory, "other")} == {"pending"}
    with factory() as s:
        assert {a.status for a in s.scalars(select(ResolutionAction)) if a.tenant_id != t.id} == {
            "DELIVERED"
        }


def test_redeliver_task_resends_dead_events_and_ignores_unknown_tenants(
    inproc_worker, worker_webhooks, factory, settings, receivers
):
    from workers.tasks import redeliver_task

    r = receivers(fail_rate=1.0, faults=("500",))
    connect(factory, "acme", r)
    enrich(factory, settings, "acme", 1)
    config = replace(CONFIG, max_attempts=2)
    deliver_until(factory, config, lambda: {e.status for e in events_of(factory)} == {"dead"})
    r.fail_rate = 0.0

    redeliver_task.delay("acme")

    wait_for(
        lambda: {(e.status, e.attempts) for e in events_of(factory)} == {("delivered", 1)},
        timeout_s=60,
        what="redelivered by the worker",
    )
    assert r.unique_ids() == hook_ids(events_of(factory))
    with factory() as s:  # the audit log says who brought them back
        acme = tenants.require(s, "acme")
        rows = [(e.actor, e.action, e.details) for e in audit.entries(s, acme.id)]
    assert rows == [("celery-call", "events.redelivered", {"reset": len(events_of(factory))})]
    with structlog.testing.capture_logs() as logs:
        assert redeliver_task("no-such-tenant") == 0
    unknown = [e for e in logs if e.get("tenant") == "no-such-tenant"]
    assert [e["event"] for e in unknown] == ["task.unknown_tenant"]


@pytest.fixture
def fleet(pg_url, factory, redis_client, tmp_path):
    procs = []

    def start(kind, name="w1"):
        # A claim lease of 2 s x (16 / 16 + 2) = 6 s: the killed worker's claims expire soon.
        knobs = {**WORKER_ENV, "ENRICHMENT_WEBHOOK_TIMEOUT_S": "2"}
        env = fleet_env(pg_url, REDIS_URL, tmp_path, **knobs, ENRICHMENT_WEBHOOK_BATCH_SIZE="16")
        if kind == "beat":
            procs.append(start_beat(env, tmp_path / "beat.log", tmp_path / "beat.db"))
        else:
            procs.append(start_worker(env, tmp_path / f"{name}.log", name=name))
        return procs[-1]

    yield start
    stop_all(procs)


@pytest.mark.slow
def test_a_worker_killed_mid_delivery_loses_no_event(fleet, factory, receivers):
    r = receivers()
    r.hold()  # every POST hangs: the deliverer is caught with events claimed and in flight
    connect(factory, "acme", r)
    with factory.begin() as s:
        [make_record(s, tenants.require(s, "acme"), **DAMAGED) for _ in range(3)]
    victim = fleet("worker", "victim")
    fleet("beat")
    wait_for(lambda: r.held() >= 1, timeout_s=60, what="a POST in flight", proc=victim)
    in_flight = {req.webhook_id for req in r.requests}

    victim.kill(signal.SIGKILL)
    r.release()
    fleet("worker", "rescuer")

    def all_delivered() -> bool:
        events = events_of(factory)
        return len(events) >= 3 and {e.status for e in events} == {"delivered"}

    wait_for(all_delivered, timeout_s=90, what="every event delivered after the kill")
    assert r.unique_ids() == hook_ids(events_of(factory)) and in_flight <= r.unique_ids()
    assert r.bad_signatures == 0 and r.mismatched == []
