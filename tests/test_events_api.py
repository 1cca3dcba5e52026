"""The pull route and the action outcome route, on events from real decisions.

Given tenant acme (with its API key) whose records the real pipeline decided, and tenant
other with its own key, when acme pages through its events and reports outcomes, then the
cursor never repeats or skips an event (not even one committed late), and another tenant's
key or id opens nothing.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from enrichment.core import tenants
from enrichment.core.models import OutboxEvent, ResolutionAction, utcnow
from enrichment.core.outbox import webhook_id
from enrichment.delivery import events
from enrichment.delivery.deliver import deliver_due
from tests import test_delivery
from tests.fleet import wait_for
from tests.test_delivery import CONFIG, connect, enrich, events_of

receivers = test_delivery.receivers  # the fixtures, found by name
EVENTS = "/api/enrichment/events/{}"


@pytest.fixture
def keys(factory, settings):
    """acme's and other's API keys; acme has 3 decided records (9 events), other 1."""
    with factory.begin() as s:
        _, acme = tenants.create_tenant(s, "acme")
        _, other = tenants.create_tenant(s, "other")
    enrich(factory, settings, "acme", 3)
    enrich(factory, settings, "other", 1)
    return {"acme": auth(acme), "other": auth(other)}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def pull(client, key, tenant="acme", **params):
    r = client.get(EVENTS.format(tenant), headers=key, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def visible(client, key, n: int, tenant="acme"):
    """Wait until `n` events show: a page shows finished transactions only, and a long
    transaction anywhere on the server holds that horizon back for a moment."""
    wait_for(
        lambda: len(pull(client, key, tenant, limit=500)["events"]) == n,
        timeout_s=30,
        what=f"{n} events visible",
    )


def test_paging_repeats_nothing_skips_nothing_and_next_is_stable_when_empty(
    client, keys, factory, settings
):
    key = keys["acme"]
    expected = sorted(events_of(factory, "acme"), key=lambda e: (e.tx, e.id))
    visible(client, key, 9)
    seen, after = [], None
    while True:
        page = pull(client, key, limit=2, **({"after": after} if after else {}))
        if not page["events"]:
            break
        assert len(page["events"]) <= 2
        seen += page["events"]
        after = page["next"]
    assert [e["id"] for e in seen] == [e.id for e in expected]
    first = seen[0]
    assert first["webhook_id"] == webhook_id(first["id"]) and first["status"] == "pending"
    assert first["type"] == "record.enriched" and first["data"]["tenant"] == "acme"
    assert first["timestamp"].endswith("Z")
    assert pull(client, key, after=after)["next"] == after  # unchanged when empty

    enrich(factory, settings, "acme", 1)
    visible(client, key, 12)
    new = pull(client, key, after=after)["events"]
    assert [e["type"] for e in new] == ["record.enriched"] + ["action.requested"] * 2


def test_an_event_committed_late_is_not_skipped(client, keys, factory):
    key = keys["acme"]
    visible(client, key, 9)
    after = pull(client, key, limit=500)["next"]
    decided = events_of(factory, "acme")[0]
    late, early = factory(), factory()
    try:
        late.add(_event(decided, "late"))
        late.flush()  # this transaction now has an id, and commits last
        early.add(_event(decided, "early"))
        early.commit()
        assert pull(client, key, after=after)["events"] == []  # `late` might still commit
        late.commit()
    finally:
        late.close()
        early.close()
    visible(client, key, 11)
    page = pull(client, key, after=after)
    assert [e["data"]["note"] for e in page["events"]] == ["late", "early"]


def _event(like: OutboxEvent, note: str) -> OutboxEvent:
    """Another event of `like`'s record, written straight to the table (the outbox's own
    writer commits at once; this one lets a test choose when)."""
    return OutboxEvent(
        tenant_id=like.tenant_id, record_id=like.record_id, type="record.enriched",
        data={**like.data, "note": note},
        status="pending", attempts=0, next_delivery_at=utcnow(), created_at=utcnow(),
    )  # fmt: skip


def test_the_page_query_walks_every_event_on_both_databases(any_factory, settings):
    enrich(any_factory, settings, "acme", 2)
    expected = [e.id for e in sorted(events_of(any_factory), key=lambda e: (e.tx, e.id))]
    with any_factory() as s:
        tenant_id = tenants.require(s, "acme").id

    def walk(limit: int) -> tuple[list[int], events.EventPage]:
        seen, after = [], None
        with any_factory() as s:
            while (got := events.page(s, tenant_id, after=after, limit=limit)).events:
                seen += [e.id for e in got.events]
                after = events.Cursor.parse(got.next)
        return seen, got

    wait_for(lambda: len(walk(500)[0]) == 6, timeout_s=30, what="6 events visible")
    seen, last = walk(4)
    assert seen == expected
    assert last.events == [] and last.next.endswith(f"-{expected[-1]}")  # empty: next kept


@pytest.mark.parametrize("after", ["abc", "1-", "-1-2", "1-2-3", "99999999999999999999-1", "1_2"])
def test_a_malformed_cursor_is_a_one_line_422(client, keys, after):
    r = client.get(EVENTS.format("acme"), headers=keys["acme"], params={"after": after})
    assert r.status_code == 422
    assert r.json() == {"detail": "malformed cursor: pass the `next` value of the previous page"}


@pytest.mark.parametrize("limit", [0, 501])
def test_limit_is_1_to_500(client, keys, limit):
    r = client.get(EVENTS.format("acme"), headers=keys["acme"], params={"limit": limit})
    assert r.status_code == 422


def test_another_tenants_key_opens_nothing(client, keys, factory):
    assert client.get(EVENTS.format("acme"), headers=keys["other"]).status_code == 404
    visible(client, keys["other"], 3, tenant="other")
    theirs = pull(client, keys["other"], tenant="other", limit=500)["events"]
    assert {e["data"]["tenant"] for e in theirs} == {"other"}


def actions_of(factory, tenant: str) -> list[ResolutionAction]:
    with factory() as s:
        tenant_id = tenants.require(s, tenant).id
        stmt = select(ResolutionAction).where(ResolutionAction.tenant_id == tenant_id)
        return list(s.scalars(stmt.order_by(ResolutionAction.id)))


def report(client, key, action_id, tenant="acme", **body):
    return client.post(f"/api/enrichment/actions/{tenant}/{action_id}", headers=key, json=body)


def test_an_outcome_is_reported_once_and_a_repeat_is_idempotent(client, keys, factory):
    action = actions_of(factory, "acme")[0]
    first = report(client, keys["acme"], action.id, outcome="done", note="claim #123 opened")
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["id"], body["action"], body["status"]) == (action.id, action.action, "DONE")
    assert body["note"] == "claim #123 opened" and body["reported_at"]
    assert body["record"].startswith("exc-") and body["delivered_at"] is None

    again = report(client, keys["acme"], action.id, outcome="done", note="claim #123 opened")
    assert again.status_code == 200 and again.json() == body


def test_a_different_outcome_for_a_reported_action_is_409(client, keys, factory):
    action = actions_of(factory, "acme")[0]
    assert report(client, keys["acme"], action.id, outcome="failed").status_code == 200
    r = report(client, keys["acme"], action.id, outcome="done")
    assert r.status_code == 409
    assert r.json() == {
        "detail": f"action {action.id} was already reported failed; an outcome cannot change"
    }
    assert actions_of(factory, "acme")[0].status == "FAILED"


def test_another_tenants_action_is_404(client, keys, factory):
    theirs = actions_of(factory, "other")[0]
    assert report(client, keys["acme"], theirs.id, outcome="done").status_code == 404
    wrong_path = report(client, keys["other"], theirs.id, outcome="done", tenant="acme")
    assert wrong_path.status_code == 404
    assert report(client, keys["acme"], 999_999, outcome="done").status_code == 404
    assert actions_of(factory, "other")[0].status == "RECORDED"


@pytest.mark.parametrize(
    "body", [{"outcome": "maybe"}, {"outcome": "done", "note": "x" * 2001}, {"note": "hi"}]
)
def test_a_bad_outcome_body_is_422(client, keys, factory, body):
    action = actions_of(factory, "acme")[0]
    assert report(client, keys["acme"], action.id, **body).status_code == 422
    assert actions_of(factory, "acme")[0].status == "RECORDED"


def test_a_delivered_action_reports_its_delivery_with_the_outcome(client, keys, factory, receivers):
    connect(factory, "acme", receivers())
    assert deliver_due(factory, CONFIG).delivered == 9
    action = actions_of(factory, "acme")[0]
    body = report(client, keys["acme"], action.id, outcome="failed", note="carrier said no")
    assert body.status_code == 200
    assert body.json()["status"] == "FAILED" and body.json()["delivered_at"] is not None
