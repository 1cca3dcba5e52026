"""Orders as records (issue 25) on real PostgreSQL: the two routes, the watch's analysis and
its state tracking, problems raised once and attached to, and one run through a real worker."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from enrichment.cli import story as story_cli
from enrichment.core import story, tenants
from enrichment.core.backoff import delay_bounds_s
from enrichment.core.errors import TransientError
from enrichment.core.faults import Cause, with_cause
from enrichment.core.models import (
    ORDER,
    RAISED_BY_AI,
    EnrichmentAttempt,
    ExceptionRecord,
    OutboxEvent,
    utcnow,
)
from enrichment.core.pipeline import run_stage
from enrichment.core.provider import StageCall
from enrichment.core.selection import claim_due
from enrichment.core.stages import STAGES
from enrichment.metrics import prom
from enrichment.metrics.monitor import measure, run_monitor
from enrichment.providers.local import LocalProvider
from enrichment.tooling.processes import wait_for

ORDERS = "/api/enrichment/orders/{}"
RECORDS = "/api/enrichment/records/{}"
ADDRESS = {"address1": "1 Main St", "city": "Springfield", "zip": "12345", "country_code": "US"}
PAYLOAD = {"name": "#1", "financial_status": "paid", "shipping_address": ADDRESS}


@pytest.fixture
def keys(factory):
    with factory.begin() as s:
        _, key_a = tenants.create_tenant(s, "a-3pl")
        _, key_b = tenants.create_tenant(s, "b-3pl")
    return {"a-3pl": key_a, "b-3pl": key_b}


def at(delta: timedelta) -> str:
    return (utcnow() + delta).isoformat().replace("+00:00", "Z")


def ev(kind: str, delta: timedelta, source: str = "wms") -> dict:
    return {"source": source, "type": kind, "at": at(delta), "detail": ""}


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


def post(client, keys, url: str, body: dict, tenant: str = "a-3pl"):
    headers = {"Authorization": f"Bearer {keys[tenant]}", "Content-Type": "application/json"}
    return client.post(url, content=json.dumps(body).encode(), headers=headers)


def post_order(client, keys, ext: str, events: list, payload: dict = PAYLOAD):
    r = post(client, keys, ORDERS.format("a-3pl"), {"items": [order(ext, events, payload)]})
    assert r.status_code == 200, r.text
    return r.json()


def order(ext: str, events: list, payload: dict = PAYLOAD) -> dict:
    return {"external_id": ext, "payload": payload, "events": events}


def records(factory, **where) -> list[ExceptionRecord]:
    with factory() as s:
        stmt = select(ExceptionRecord).filter_by(**where).order_by(ExceptionRecord.id)
        return list(s.scalars(stmt))


def watch(factory, ext: str) -> ExceptionRecord:
    [w] = records(factory, external_id=f"order:{ext}")
    return w


def check(factory, settings, provider=None):
    """One sweep's claim, and each claimed record's order analysis, as the chain runs it."""
    with factory.begin() as s:
        claims = claim_due(s, settings)
    return [
        run_stage(
            factory,
            provider or LocalProvider(),
            settings,
            stage="order_analysis",
            record_id=c.record_id,
            lease_token=c.lease_token,
        )
        for c in claims
    ]


def attempts(factory, record_id) -> list[EnrichmentAttempt]:
    with factory() as s:
        stmt = select(EnrichmentAttempt).where(EnrichmentAttempt.record_id == record_id)
        return list(s.scalars(stmt.order_by(EnrichmentAttempt.id)))


# -- the routes ----------------------------------------------------------------------------


def test_an_order_posted_without_an_exception_is_watched_and_due_at_once(client, keys, factory):
    events = [ev("payment_captured", hours(-1), "payment")]
    body = post_order(client, keys, "ORD-1", events)

    assert (body["created"], body["items"][0]["result"]) == (1, "created")
    w = watch(factory, "ORD-1")
    assert (w.record_type, w.reason_code, w.source) == (ORDER, "ORDER_WATCH", None)
    assert w.next_attempt_at <= utcnow() and w.ai_analysis is None
    # Replayed: unchanged, still one watch
    again = post_order(client, keys, "ORD-1", events)
    assert again["unchanged"] == 1 and len(records(factory, record_type=ORDER)) == 1


def test_a_bad_order_is_rejected_with_its_field_and_the_others_are_written(client, keys, factory):
    items = [order("ORD-1", []), {"external_id": "ORD-2", "payload": {}, "events": [{"at": 1}]}]

    r = post(client, keys, ORDERS.format("a-3pl"), {"items": [*items, order("ORD-1", [])]})

    assert r.status_code == 200, r.text
    got = [(i["result"], i["field"]) for i in r.json()["items"]]
    assert got[0] == ("created", None)
    assert got[1][0] == "rejected" and got[1][1].startswith("events.0")
    assert got[2] == ("rejected", "external_id")
    assert [w.external_id for w in records(factory, record_type=ORDER)] == ["order:ORD-1"]


def test_events_append_to_one_order_and_make_its_watch_due_again(client, keys, factory, settings):
    post_order(client, keys, "ORD-1", [ev("released_to_pick", hours(-1))])
    check(factory, settings)
    assert watch(factory, "ORD-1").next_attempt_at > utcnow() + hours(20)
    url = ORDERS.format("a-3pl") + "/ORD-1/events"

    picked = ev("picked", hours(0))
    r = post(client, keys, url, {"events": [picked, dict(picked)]})

    assert r.status_code == 200 and r.json() == {"tenant": "a-3pl", "order": "ORD-1", "added": 1}
    w = watch(factory, "ORD-1")
    assert w.next_attempt_at <= utcnow() and w.lease_token is None
    unknown = post(client, keys, ORDERS.format("a-3pl") + "/NOPE/events", {"events": []})
    assert unknown.status_code == 422 and "send 1 to" in unknown.json()["detail"]
    missing = post(
        client, keys, ORDERS.format("a-3pl") + "/NOPE/events", {"events": [ev("x", hours(0))]}
    )
    assert missing.status_code == 404
    # Another tenant's key does not reach it
    other = post(client, keys, url, {"events": [ev("packed", hours(0))]}, tenant="b-3pl")
    assert other.status_code in (403, 404)


# -- the analysis --------------------------------------------------------------------------


def test_a_healthy_order_raises_nothing_and_is_no_longer_watched_once_delivered(
    client, keys, factory, settings
):
    flow = [ev("payment_captured", hours(-30), "payment"), ev("allocated", hours(-29)),
            ev("released_to_pick", hours(-28)), ev("picked", hours(-26)),
            ev("packed", hours(-25)), ev("picked_up", hours(-20), "carrier"),
            ev("in_transit", hours(-10), "carrier")]  # fmt: skip
    post_order(client, keys, "ORD-OK", flow)

    [out] = check(factory, settings)

    w = watch(factory, "ORD-OK")
    assert out.kind == "released" and w.ai_analysis["problems"] == []
    assert w.enriched_at is None and w.next_attempt_at > utcnow() + hours(70)  # delivery due
    url = ORDERS.format("a-3pl") + "/ORD-OK/events"
    post(client, keys, url, {"events": [ev("delivered", hours(0), "carrier")]})
    check(factory, settings)

    w = watch(factory, "ORD-OK")
    assert w.enriched_at is not None and w.enrichment_state["order_analysis"]["status"] == (
        "COMPLETED"
    )
    assert check(factory, settings) == []  # closed: nothing claimed again
    assert records(factory, source=RAISED_BY_AI) == []
    assert [a.outcome for a in attempts(factory, w.id)] == ["completed", "completed"]


def test_a_tenant_exception_that_came_first_is_not_duplicated(client, keys, factory, settings):
    events = [ev("released_to_pick", hours(-30))]
    tenant_item = {
        "order": order("ORD-7", events),
        "exception": {"external_id": "EXC-7", "reason_code": "LATE_PICK", "severity": "high"},
    }
    assert post(client, keys, RECORDS.format("a-3pl"), {"items": [tenant_item]}).status_code == 200
    post_order(client, keys, "ORD-7", events)

    check(factory, settings)

    w = watch(factory, "ORD-7")
    assert [p["label"] for p in w.ai_analysis["problems"]] == ["PICK_DELAY"]
    assert records(factory, source=RAISED_BY_AI) == []


class Failing(LocalProvider):
    """The local analysis after the scripted failures are used up."""

    def __init__(self, *errors: Exception) -> None:
        super().__init__()
        self.errors = list(errors)

    def analyze_order(self, ctx) -> StageCall:
        if self.errors:
            raise self.errors.pop(0)
        return super().analyze_order(ctx)


def test_a_failed_analysis_leaves_the_fields_null_and_retries_on_the_backoff(
    client, keys, factory, settings
):
    post_order(client, keys, "ORD-F", [ev("released_to_pick", hours(-30))])

    [out] = check(factory, settings, Failing(TransientError("AI timed out")))

    w = watch(factory, "ORD-F")
    low, high = delay_bounds_s(1, scale=settings.backoff_scale, jitter=settings.backoff_jitter)
    wait_s = (w.next_attempt_at - w.last_enrichment_attempt).total_seconds()
    assert out.kind == "retry" and low <= wait_s <= high + 1
    assert w.ai_analysis is None and w.enrichment_retry_count == 1
    assert w.enrichment_state["order_analysis"]["status"] == "FAILED"
    assert records(factory, source=RAISED_BY_AI) == []
    [attempt] = attempts(factory, w.id)
    assert (attempt.stage, attempt.outcome) == ("order_analysis", "failed")


def test_a_fleet_fault_charges_the_order_nothing(client, keys, factory, settings):
    post_order(client, keys, "ORD-D", [ev("released_to_pick", hours(-30))])
    overloaded = with_cause(TransientError("provider overloaded"), Cause.OVERLOAD)

    [out] = check(factory, settings, Failing(overloaded))

    w = watch(factory, "ORD-D")
    assert out.kind == "deferred" and w.enrichment_retry_count == 0
    assert w.ai_analysis is None and w.lease_token is None and w.next_attempt_at <= utcnow()
    assert [(a.outcome, a.fault) for a in attempts(factory, w.id)] == [("deferred", "overload")]
    # Claimed again at once, and the analysis then raises the late pick
    check(factory, settings)
    assert [r.reason_code for r in records(factory, source=RAISED_BY_AI)] == ["PICK_DELAY"]


def test_the_monitor_counts_orders_apart_from_exceptions(client, keys, factory, settings):
    post_order(client, keys, "ORD-1", [ev("released_to_pick", hours(-30))])
    post_order(client, keys, "ORD-2", [ev("released_to_pick", hours(-1))])
    check(factory, settings)

    with factory() as s:
        tenant = tenants.require(s, "a-3pl")
        snap = measure(s, tenant, settings, settings.monitor, now=utcnow())

    assert (snap.orders_watched, snap.orders_analysed, snap.problems_raised) == (2, 2, 1)
    # The raised exception is a record; the watches are not (nor stuck, nor backlog)
    assert (snap.total_records, snap.backlog_records) == (1, 1)
    # Each snapshot keeps them, and Prometheus shows them
    run_monitor(factory, settings, now=utcnow())
    text = prom.exposition(factory).decode()
    assert 'enrichment_orders_watched{tenant="a-3pl"} 2.0' in text
    assert 'enrichment_problems_raised{tenant="a-3pl"} 1.0' in text


# -- a raised problem, classified by the provider that raised it ----------------------------

# Each problem the local order analysis raises from a broken promise (the watch's waits), as
# (label, the order's milestones as (event, hours ago, source)).
RAISED_KINDS = [
    ("INVENTORY_SHORTAGE", (("payment_captured", 14, "payment"),)),
    ("PICK_DELAY", (("payment_captured", 32, "payment"), ("allocated", 31, "wms"),
                    ("released_to_pick", 30, "wms"))),
    ("PACK_DELAY", (("released_to_pick", 18, "wms"), ("picked", 15, "wms"))),
    ("MISSING_SCAN", (("picked", 42, "wms"), ("packed", 40, "wms"))),  # never collected
    ("MISSING_SCAN", (("packed", 101, "wms"), ("picked_up", 100, "carrier"))),  # silent since
    ("DELIVERY_DELAY", (("packed", 111, "wms"), ("picked_up", 110, "carrier"),
                        ("in_transit", 60, "carrier"))),  # scans coming, not delivered
]  # fmt: skip


@pytest.mark.parametrize(
    ("label", "steps"), RAISED_KINDS, ids=[f"{k}-{i}" for i, (k, _) in enumerate(RAISED_KINDS)]
)
def test_a_raised_problem_is_classified_with_its_label_by_the_provider_that_raised_it(
    client, keys, factory, settings, label, steps
):
    # Given an order whose promise is broken, analysed: one problem raised
    post_order(client, keys, "ORD-R", [ev(kind, hours(-h), src) for kind, h, src in steps])
    check(factory, settings)
    [problem] = watch(factory, "ORD-R").ai_analysis["problems"]
    [raised] = records(factory, source=RAISED_BY_AI)
    assert (problem["label"], raised.reason_code) == (label, label)

    # When the raised exception goes through the stages with the same local provider
    with factory.begin() as s:
        claims = [c for c in claim_due(s, settings) if c.record_id == raised.id]
        threshold = tenants.require(s, "a-3pl").confidence_threshold
    [claim] = claims
    for stage in STAGES:
        out = run_stage(factory, LocalProvider(), settings, stage=stage,
                        record_id=raised.id, lease_token=claim.lease_token)  # fmt: skip
        if out.kind != "continue":
            break

    # Then it is classified as raised, at or over the threshold, on the evidence that raised
    # it (read as of when it was raised), and resolved without a person
    [done] = records(factory, id=raised.id)
    assert (done.ai_label, done.escalated_at) == (label, None), done.ai_notes
    assert done.ai_confidence >= threshold, done.ai_notes
    assert problem["evidence"][0] in done.ai_analysis["problems"]
    assert done.enriched_at is not None


# -- through a real worker -----------------------------------------------------------------


def test_a_missed_pick_deadline_raises_pick_delay_once_and_the_tenants_exception_attaches(
    inproc_worker, client, keys, factory
):
    from workers import tasks

    # Given an order released to pick 24 h ago less 3 s: its pick deadline is just ahead
    events = [ev("payment_captured", hours(-26), "payment"), ev("allocated", hours(-25)),
              ev("released_to_pick", hours(-24) + timedelta(seconds=3))]  # fmt: skip
    post_order(client, keys, "ORD-P", events)
    tasks.sweep.run("a-3pl")  # analysed on arrival: nothing yet
    wait_for(
        lambda: watch(factory, "ORD-P").ai_analysis is not None, timeout_s=30, what="first look"
    )
    assert watch(factory, "ORD-P").ai_analysis["problems"] == []
    assert records(factory, source=RAISED_BY_AI) == []

    # When the deadline passes (the sweep hands the chain a countdown to it)
    tasks.sweep.run("a-3pl")
    wait_for(lambda: records(factory, source=RAISED_BY_AI), timeout_s=30, what="raised")

    # Then one PICK_DELAY exception is raised, with its order.at_risk event first
    [raised] = records(factory, source=RAISED_BY_AI)
    assert (raised.reason_code, raised.external_id) == ("PICK_DELAY", "ai:PICK_DELAY:ORD-P")
    tasks.sweep.run("a-3pl")  # classified and resolved like any other
    wait_for(lambda: records(factory, id=raised.id)[0].enriched_at is not None
             or records(factory, id=raised.id)[0].escalated_at is not None,
             timeout_s=30, what="raised exception decided")  # fmt: skip
    with factory() as s:
        types = s.scalars(
            select(OutboxEvent.type).where(OutboxEvent.record_id == raised.id).order_by("id")
        ).all()
    assert types[0] == "order.at_risk" and types[1] in ("record.enriched", "record.escalated")

    # And new events that change nothing about it raise nothing more
    url = ORDERS.format("a-3pl") + "/ORD-P/events"
    post(client, keys, url, {"events": [ev("note_added", hours(0), "helpdesk")]})
    tasks.sweep.run("a-3pl")
    wait_for(lambda: len(attempts(factory, watch(factory, "ORD-P").id)) >= 3, timeout_s=30,
             what="third look")  # fmt: skip
    assert len(records(factory, source=RAISED_BY_AI)) == 1

    # The tenant's own exception for the same problem, later: attached, not duplicated
    tenant_item = {
        "order": order("ORD-P", events),
        "exception": {"external_id": "EXC-9", "reason_code": "PICK_DELAY", "severity": "high"},
    }
    r = post(client, keys, RECORDS.format("a-3pl"), {"items": [tenant_item]})
    assert r.status_code == 200, r.text
    [item] = r.json()["items"]
    assert item["result"] == "updated" and "ai:PICK_DELAY:ORD-P" in item["reason"]
    [only] = records(factory, record_type="exception")
    assert (only.id, only.external_id, only.source) == (raised.id, "EXC-9", RAISED_BY_AI)
    assert only.attached_at is not None and only.created_at < only.attached_at


def test_the_story_says_who_raised_an_exception_and_when_the_tenants_attached(
    client, keys, factory, settings
):
    # Given an order past its pick deadline, analysed: the fleet raises PICK_DELAY
    events = [ev("released_to_pick", hours(-30))]
    post_order(client, keys, "ORD-S", events)
    check(factory, settings)
    [raised] = records(factory, source=RAISED_BY_AI)
    with factory() as s:
        before = story.story(s, tenants.require(s, "a-3pl"), raised.external_id, now=utcnow())

    # When the tenant's own exception for the same problem arrives
    item = {
        "order": order("ORD-S", events),
        "exception": {"external_id": "EXC-S", "reason_code": "LATE_PICK", "severity": "high"},
    }
    assert post(client, keys, RECORDS.format("a-3pl"), {"items": [item]}).status_code == 200

    # Then the story says the order analysis raised it, then when the tenant's attached
    with factory() as s:
        tenant = tenants.require(s, "a-3pl")
        after = story.story(s, tenant, "EXC-S", now=utcnow())
        watched = story.story(s, tenant, watch(factory, "ORD-S").external_id, now=utcnow())
    assert (before.record.source, before.record.attached_at) == (RAISED_BY_AI, None)
    assert after.record.source == RAISED_BY_AI and after.record.attached_at is not None
    lines = story_cli.timeline(after)
    assert "raised by the order analysis" in lines[0]
    assert any("the tenant's own exception attached (LATE_PICK)" in line for line in lines)
    # and a watched order has its one stage only
    assert watched.record.record_type == "order"
    assert [v.stage for v in watched.stages] == ["order_analysis"]
    assert "order watched" in story_cli.timeline(watched)[0]
