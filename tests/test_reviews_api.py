"""The review queue over the API, on real PostgreSQL.

Given tenant acme with an escalated record (the AI never answered), an audit-sampled record
the AI resolved, a resolved record not sampled and one still waiting, and tenant other-3pl
with an escalated record of its own, when acme's key lists the queue, reviews, overrides or
requeues, then the queue holds exactly the escalated and audited records oldest first, each
decision is checked against the taxonomy, written once with its events (delivered to a real
receiver), and nothing of other-3pl is seen or touched.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from enrichment.core import reviewers, tenants
from enrichment.core.models import (
    EnrichmentAttempt,
    ExceptionRecord,
    OutboxEvent,
    ResolutionAction,
    Review,
    utcnow,
)
from enrichment.core.selection import claim_due
from enrichment.reviews import decide as reviews
from enrichment.tooling.receiver import Receiver
from tests.factories import make_record
from tests.fleet import wait_for
from tests.test_delivery import CONFIG, connect, deliver_until, enrich, events_of, hook_ids

QUEUE = "/api/enrichment/reviews/{tenant}"
DECIDE = "/api/enrichment/reviews/{tenant}/{record_id}"
REQUEUE = "/api/enrichment/reviews/{tenant}/{record_id}/requeue"
DAMAGED = {"label": "DAMAGED_PACKAGE", "actions": ["OPEN_CARRIER_CLAIM", "RESHIP_ORDER"]}


def attempt(s, rec, outcome, at, error=None):
    s.add(
        EnrichmentAttempt(
            tenant_id=rec.tenant_id,
            record_id=rec.id,
            stage="classification",
            outcome=outcome,
            error=error,
            latency_s=1.5,
            provider="anthropic",
            model="claude-x",
            created_at=at,
        )
    )


@pytest.fixture
def world(factory):
    """acme: escalated 2 h ago (two failed attempts, no AI label), audited 1 h ago (the AI
    said DAMAGED_PACKAGE 0.92 and recorded OPEN_CARRIER_CLAIM), resolved and not sampled,
    and waiting; other-3pl: escalated 3 h ago (older than all of acme's)."""
    now = utcnow()
    with factory.begin() as s:
        acme, key = tenants.create_tenant(s, "acme")
        other, other_key = tenants.create_tenant(s, "other-3pl")
        for name in ("ana", "bob"):  # registered reviewers a review may name
            reviewers.add(s, acme.id, name)
        esc = make_record(
            s, acme, escalated_at=now - timedelta(hours=2), enrichment_retry_count=2,
            escalation_reason="classification: provider refused", reason_code="DAMAGE",
        )  # fmt: skip
        for minutes in (150, 125):
            attempt(s, esc, "failed", now - timedelta(minutes=minutes), "HTTP 529 overloaded")
        audit = make_record(
            s, acme, ai_label="DAMAGED_PACKAGE", ai_confidence=0.92, audit_sample=True,
            enriched_at=now - timedelta(hours=1), notes="Carton dented, contents fine?",
            ai_source={"classification": {"provider": "local", "model": "m1"}},
        )  # fmt: skip
        s.add(ResolutionAction(tenant_id=acme.id, record_id=audit.id, action="OPEN_CARRIER_CLAIM"))
        plain = make_record(s, acme, ai_label="OTHER", ai_confidence=0.9, enriched_at=now)
        waiting = make_record(s, acme)
        theirs = make_record(
            s, other, escalated_at=now - timedelta(hours=3), escalation_reason="theirs"
        )
    ids = {"esc": esc.id, "audit": audit.id, "plain": plain.id, "waiting": waiting.id}
    return {"key": key, "other_key": other_key, **ids, "theirs": theirs.id}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def get_queue(client, world, query=""):
    return client.get(QUEUE.format(tenant="acme") + query, headers=auth(world["key"]))


def decide(client, world, record_id, *, key=None, tenant="acme", **body):
    body = {"reviewer": "ana", **body}
    path = DECIDE.format(tenant=tenant, record_id=record_id)
    return client.post(path, json=body, headers=auth(key or world["key"]))


def requeue(client, world, record_id, *, key=None):
    path = REQUEUE.format(tenant="acme", record_id=record_id)
    return client.post(path, headers=auth(key or world["key"]))


def load(factory, record_id) -> ExceptionRecord:
    with factory() as s:
        return s.get(ExceptionRecord, record_id)


def reviews_of(factory, record_id) -> list[Review]:
    with factory() as s:
        return list(s.scalars(select(Review).where(Review.record_id == record_id).order_by("id")))


def events_for(factory, record_id) -> list[OutboxEvent]:
    with factory() as s:
        stmt = select(OutboxEvent).where(OutboxEvent.record_id == record_id)
        return list(s.scalars(stmt.order_by(OutboxEvent.id)))


def health(client, world) -> dict:
    return client.get("/api/enrichment/health/acme", headers=auth(world["key"])).json()


# -- the queue ------------------------------------------------------------------------------


def test_the_queue_holds_the_escalated_and_the_audited_oldest_first(client, world):
    r = get_queue(client, world)
    assert r.status_code == 200
    body = r.json()
    assert body["tenant"] == "acme" and body["total"] == 2
    assert body["oldest_age_s"] == pytest.approx(7200, abs=60)
    esc, audit = body["items"]
    assert (esc["record_id"], esc["kind"]) == (world["esc"], "escalation")
    assert (audit["record_id"], audit["kind"]) == (world["audit"], "audit")
    assert esc["waiting_since"] < audit["waiting_since"]
    assert esc["reason"] == "classification: provider refused" and audit["reason"] is None
    assert (esc["ai_label"], esc["ai_confidence"]) == (None, None)
    assert (audit["ai_label"], audit["ai_confidence"]) == ("DAMAGED_PACKAGE", 0.92)


def test_each_item_carries_the_order_its_events_the_notes_and_the_attempts(client, world):
    esc, audit = get_queue(client, world).json()["items"]
    assert esc["order"]["line_items"][0]["sku"] == "SKU-1"
    assert esc["order_external_id"].startswith("order-")
    assert esc["order_events"][0]["type"] == "package_damaged"
    assert audit["notes"] == "Carton dented, contents fine?"
    assert [(a["outcome"], a["error"]) for a in esc["attempts"]] == [
        ("failed", "HTTP 529 overloaded"),
        ("failed", "HTTP 529 overloaded"),
    ]
    assert esc["retry_count"] == 2 and audit["attempts"] == []


def test_the_limit_lists_fewer_but_counts_all(client, world):
    body = get_queue(client, world, "?limit=1").json()
    assert body["total"] == 2 and [i["record_id"] for i in body["items"]] == [world["esc"]]
    assert get_queue(client, world, "?limit=0").status_code == 422
    assert get_queue(client, world, "?limit=201").status_code == 422


def test_another_tenants_queue_is_not_seen(client, world):
    listed = {i["record_id"] for i in get_queue(client, world).json()["items"]}
    assert world["theirs"] not in listed
    r = client.get(QUEUE.format(tenant="acme"), headers=auth(world["other_key"]))
    assert r.status_code == 404 and str(world["esc"]) not in r.text


# -- a review -------------------------------------------------------------------------------


def test_a_review_resolves_the_record_by_a_person_and_keeps_what_the_ai_said(
    client, factory, world
):
    assert health(client, world)["escalated_records"] == 1

    r = decide(client, world, world["esc"], note="crushed, reship", **DAMAGED)

    assert r.status_code == 200, r.text
    [review] = reviews_of(factory, world["esc"])
    assert r.json() == {
        "review_id": review.id,
        "record_id": world["esc"],
        "external_id": load(factory, world["esc"]).external_id,
        "label": "DAMAGED_PACKAGE",
        "actions": ["OPEN_CARRIER_CLAIM", "RESHIP_ORDER"],
        "new_actions": ["OPEN_CARRIER_CLAIM", "RESHIP_ORDER"],
        "override": False,
    }
    assert (review.kind, review.reviewer, review.note) == ("escalation", "ana", "crushed, reship")
    assert (review.ai_label, review.ai_confidence, review.overrides) == (None, None, None)
    rec = load(factory, world["esc"])
    assert (rec.ai_label, rec.ai_confidence) == (None, None)  # the AI never answered
    assert (rec.final_label, rec.final_actions) == ("DAMAGED_PACKAGE", DAMAGED["actions"])
    assert rec.decided_by == "human" and rec.reviewed_at == review.created_at
    assert rec.escalated_at is not None  # when the escalation began stays known
    assert [i["record_id"] for i in get_queue(client, world).json()["items"]] == [world["audit"]]
    assert health(client, world)["escalated_records"] == 0


def test_an_audit_review_keeps_the_ai_label_and_requests_only_new_actions(client, factory, world):
    r = decide(client, world, world["audit"], label="DAMAGED_PACKAGE",
               actions=["OPEN_CARRIER_CLAIM", "NOTIFY_CUSTOMER"])  # fmt: skip

    assert r.status_code == 200, r.text
    assert r.json()["new_actions"] == ["NOTIFY_CUSTOMER"]  # the claim was the AI's already
    [review] = reviews_of(factory, world["audit"])
    assert (review.kind, review.ai_label, review.ai_confidence) == (
        "audit",
        "DAMAGED_PACKAGE",
        0.92,
    )
    assert review.ai_source == {"provider": "local", "model": "m1"}
    rec = load(factory, world["audit"])
    assert (rec.ai_label, rec.ai_confidence, rec.decided_by) == ("DAMAGED_PACKAGE", 0.92, "human")
    assert [e.type for e in events_for(factory, world["audit"])] == [
        "record.reviewed",
        "action.requested",
    ]


def test_the_decision_goes_out_as_record_reviewed_then_its_actions(client, factory, world):
    decide(client, world, world["esc"], **DAMAGED)

    events = events_for(factory, world["esc"])
    assert [e.type for e in events] == ["record.reviewed", "action.requested", "action.requested"]
    reviewed, *requested = events
    assert reviewed.data == {
        "tenant": "acme",
        "record": load(factory, world["esc"]).external_id,
        "kind": "escalation",
        "label": "DAMAGED_PACKAGE",
        "actions": DAMAGED["actions"],
        "reviewer": "ana",
        "override": False,
        "ai_label": None,
        "ai_confidence": None,
    }
    assert [e.data["action"] for e in requested] == DAMAGED["actions"]
    assert all(e.status == "pending" and e.action_id for e in requested)
    # Written like the AI's events (outbox.event_row): due at once, no attempt, in order.
    assert [e.id for e in events] == sorted(e.id for e in events) and reviewed.action_id is None
    assert all(e.data["action_id"] == e.action_id for e in requested)
    assert all(e.attempts == 0 and e.next_delivery_at == e.created_at for e in events)


def test_the_events_are_delivered_to_the_tenants_webhook(client, factory, world):
    with Receiver() as receiver:
        connect(factory, "acme", receiver)
        decide(client, world, world["esc"], **DAMAGED)
        events = events_of(factory, "acme")
        assert len(events) == 3

        deliver_until(
            factory, CONFIG, lambda: receiver.unique_ids() == hook_ids(events), what="delivered"
        )

    assert receiver.bad_signatures == 0 and receiver.duplicates == []
    types = [receiver.events[f"evt_{e.id}"]["type"] for e in events]
    assert types == ["record.reviewed", "action.requested", "action.requested"]
    assert receiver.first_at[f"evt_{events[0].id}"] <= receiver.first_at[f"evt_{events[1].id}"]
    with factory() as s:
        statuses = s.scalars(
            select(ResolutionAction.status).where(ResolutionAction.record_id == world["esc"])
        ).all()
    assert statuses == ["DELIVERED", "DELIVERED"]


# -- what a review refuses -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"label": "REFUND_NOW", "actions": []}, "label"),
        ({"label": "DAMAGED_PACKAGE", "actions": ["ISSUE_REFUND"]}, "actions"),
        ({"label": "DAMAGED_PACKAGE", "actions": [], "reviewer": "   "}, "reviewer"),
        ({"label": "OTHER", "actions": [], "note": "nul \x00 byte"}, "note"),
        ({"label": "OTHER", "actions": [], "extra": 1}, "extra"),
    ],
)
def test_a_body_outside_the_schema_is_422_and_writes_nothing(client, factory, world, body, says):
    r = decide(client, world, world["esc"], **body)
    assert r.status_code == 422
    assert any(says in [str(part) for part in e["loc"]] for e in r.json()["detail"])
    assert reviews_of(factory, world["esc"]) == [] and events_for(factory, world["esc"]) == []


def test_actions_outside_the_labels_allow_list_are_422_in_one_clear_line(client, factory, world):
    r = decide(client, world, world["esc"], label="OTHER", actions=["RESHIP_ORDER"])
    assert r.status_code == 422
    assert r.json() == {"detail": "actions not allowed for OTHER: RESHIP_ORDER (allowed: none)"}
    r = decide(client, world, world["esc"], label="PICK_DELAY", actions=["RETRY_PAYMENT"])
    assert r.json()["detail"].endswith("RETRY_PAYMENT (allowed: PRIORITIZE_PICK)")
    assert reviews_of(factory, world["esc"]) == []
    assert load(factory, world["esc"]).reviewed_at is None


def test_a_repeated_action_is_one_action(client, factory, world):
    r = decide(client, world, world["esc"], label="PICK_DELAY",
               actions=["PRIORITIZE_PICK", "PRIORITIZE_PICK"])  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["actions"] == r.json()["new_actions"] == ["PRIORITIZE_PICK"]
    assert load(factory, world["esc"]).final_actions == ["PRIORITIZE_PICK"]


def test_a_second_review_is_409_unless_it_overrides(client, factory, world):
    first = decide(client, world, world["esc"], **DAMAGED)
    again = decide(client, world, world["esc"], reviewer="bob", label="OTHER", actions=[])
    assert again.status_code == 409
    assert "reviewed by ana" in again.json()["detail"] and "override" in again.json()["detail"]
    assert len(reviews_of(factory, world["esc"])) == 1

    r = decide(client, world, world["esc"], reviewer="bob", label="OTHER", actions=[],
               override=True)  # fmt: skip

    assert r.status_code == 200, r.text
    assert r.json()["override"] is True and r.json()["new_actions"] == []
    one, two = reviews_of(factory, world["esc"])
    assert one.id == first.json()["review_id"] and two.overrides == one.id
    assert (two.reviewer, two.label, two.kind) == ("bob", "OTHER", "escalation")
    rec = load(factory, world["esc"])
    assert (rec.final_label, rec.final_actions, rec.reviewed_at) == ("OTHER", [], two.created_at)
    last = events_for(factory, world["esc"])[-1]
    assert last.type == "record.reviewed" and last.data["override"] is True


def test_a_record_not_in_the_queue_or_another_tenants_is_404(client, factory, world):
    for record_id in (world["plain"], world["waiting"], world["theirs"], 2**31 - 1):
        r = decide(client, world, record_id, label="OTHER", actions=[])
        assert r.status_code == 404
        assert r.json() == {"detail": f"record {record_id} is not waiting for a review"}
    other = decide(client, world, world["esc"], key=world["other_key"], label="OTHER")
    assert other.status_code == 404 and "acme" not in other.text.replace("'acme' not found", "")
    assert load(factory, world["theirs"]).reviewed_at is None
    assert reviews_of(factory, world["esc"]) == []


# -- requeue for the AI ---------------------------------------------------------------------


def test_requeue_hands_an_escalated_record_back_to_the_ai(client, factory, settings, world):
    r = requeue(client, world, world["esc"])

    assert r.status_code == 200 and r.json() == {"record_id": world["esc"], "requeued": True}
    rec = load(factory, world["esc"])
    assert (rec.escalated_at, rec.enrichment_retry_count, rec.reviewed_at) == (None, 0, None)
    assert [i["record_id"] for i in get_queue(client, world).json()["items"]] == [world["audit"]]
    with factory.begin() as s:
        claimed = {c.record_id for c in claim_due(s, settings, tenant_id=rec.tenant_id)}
    assert claimed == {world["esc"], world["waiting"]}
    assert requeue(client, world, world["esc"]).status_code == 404


def test_requeue_refuses_an_audit_item_a_reviewed_one_and_others(client, factory, world):
    audit = requeue(client, world, world["audit"])
    assert audit.status_code == 409 and "review it instead" in audit.json()["detail"]
    assert load(factory, world["audit"]).audit_sample is True
    decide(client, world, world["esc"], label="OTHER", actions=[])
    for record_id in (world["esc"], world["plain"], world["theirs"]):
        assert requeue(client, world, record_id).status_code == 404
    assert requeue(client, world, world["esc"], key=world["other_key"]).status_code == 404
    assert load(factory, world["theirs"]).escalated_at is not None


# -- the audit sample, chosen by the pipeline -------------------------------------------------


@pytest.mark.parametrize(("rate", "sampled"), [(1.0, True), (0.0, False)])
def test_the_tenants_audit_rate_decides_whether_a_resolved_record_is_queued(
    client, factory, settings, rate, sampled
):
    with factory.begin() as s:
        tenant, key = tenants.create_tenant(s, "acme")
        tenant.settings = {"audit_rate": rate}

    [record_id] = enrich(factory, settings, "acme", 1)

    rec = load(factory, record_id)
    assert rec.enriched_at is not None and rec.audit_sample is sampled
    body = client.get(QUEUE.format(tenant="acme"), headers=auth(key)).json()
    assert body["total"] == int(sampled)
    if sampled:
        [item] = body["items"]
        assert (item["record_id"], item["kind"], item["ai_label"]) == (
            record_id,
            "audit",
            "DAMAGED_PACKAGE",
        )
        assert [a["stage"] for a in item["attempts"]] == [
            "order_analysis",
            "classification",
            "automation",
        ]


# -- the documented contract ----------------------------------------------------------------


def test_the_body_schema_names_each_labels_allowed_actions(client):
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/api/enrichment/reviews/{tenant}/{record_id}"]["post"]
    assert set(operation["responses"]) >= {"200", "401", "404", "409", "422"}
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    branches = spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]["anyOf"]
    by_label = {b["properties"]["label"]["enum"][0]: b["properties"]["actions"] for b in branches}
    assert by_label["OTHER"]["maxItems"] == 0
    assert by_label["PICK_DELAY"]["items"]["enum"] == ["PRIORITIZE_PICK"]
    assert "beat" in operation["description"]  # the events go out without Celery in the API


def lock_waits(factory) -> int:
    """Sessions of this database waiting on a lock (a fresh transaction: pg_stat_activity
    is a snapshot per transaction)."""
    with factory() as s:
        return s.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )


def test_two_first_reviews_at_once_write_one_and_refuse_the_other(factory, world):
    """The second waits on the first's row lock, then sees the review and is refused."""

    def review(reviewer: str):
        with factory.begin() as s:
            body = reviews.ReviewIn(label="OTHER", reviewer=reviewer)
            return reviews.submit(s, tenants.require(s, "acme"), world["esc"], body, actor="t")

    first = factory()
    try:
        body = reviews.ReviewIn(label="OTHER", reviewer="ana")
        reviews.submit(first, tenants.require(first, "acme"), world["esc"], body, actor="t")
        with ThreadPoolExecutor(1) as pool:
            second = pool.submit(review, "bob")
            wait_for(lambda: lock_waits(factory) > 0, timeout_s=10, what="bob's lock wait")
            first.commit()
            with pytest.raises(reviews.AlreadyReviewed, match="reviewed by ana"):
                second.result(timeout=10)
    finally:
        first.close()
    assert [r.reviewer for r in reviews_of(factory, world["esc"])] == ["ana"]
