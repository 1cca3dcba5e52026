"""Approval for costly actions (issue 22), on real PostgreSQL (and SQLite for the write).

Given tenant acme whose `approval_actions` name RESHIP_ORDER, when the pipeline resolves a
damaged parcel to OPEN_CARRIER_CLAIM and RESHIP_ORDER, then the claim goes out at once and
the reship waits AWAITING_APPROVAL with no event, its record in the review queue as an
"approval" item; a review that keeps the reship approves it (one action.requested event,
RECORDED, an audit row), one that leaves it out declines it (never sent, an audit row).
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from enrichment.api import review_queue_page
from enrichment.api.review_page import Draft
from enrichment.core import tenants
from enrichment.core.audit import ACTION_APPROVED, ACTION_DECLINED, AuditEntry
from enrichment.core.models import ExceptionRecord, OutboxEvent, ResolutionAction, utcnow
from enrichment.core.selection import claim_due
from enrichment.core.story import story
from enrichment.core.taxonomy import Label
from enrichment.core.tenant_settings import TenantSettings, TenantSettingsError
from enrichment.reporting import pages
from enrichment.reviews import decide, queue
from tests.factories import make_record, make_tenant
from tests.scripted import ScriptedProvider
from tests.test_pipeline import run_chain

APPROVE_RESHIP = {"approval_actions": ["RESHIP_ORDER"]}
ANN = "reviewer:ann"


def resolve(factory, settings, config=APPROVE_RESHIP, *, name="acme") -> int:
    """A record of `name` (made with `config`) through the real pipeline; the scripted AI
    says DAMAGED_PACKAGE with OPEN_CARRIER_CLAIM and RESHIP_ORDER."""
    with factory.begin() as s:
        tenant = tenants.by_name(s, name) or make_tenant(s, name, settings=config)
        record_id = make_record(s, tenant).id
    with factory.begin() as s:
        [claim] = claim_due(s, settings, tenant_id=tenant.id)
    kinds, _ = run_chain(factory, ScriptedProvider(), settings, record_id, claim.lease_token)
    assert kinds == ["continue", "continue", "done"]
    return record_id


def statuses(factory, record_id) -> dict[str, str]:
    with factory() as s:
        rows = s.scalars(select(ResolutionAction).where(ResolutionAction.record_id == record_id))
        return {a.action: a.status for a in rows}


def events(factory, record_id) -> list[OutboxEvent]:
    with factory() as s:
        stmt = select(OutboxEvent).where(OutboxEvent.record_id == record_id)
        return list(s.scalars(stmt.order_by(OutboxEvent.id)))


def requested(factory, record_id) -> list[str]:
    return [e.data["action"] for e in events(factory, record_id) if e.type == "action.requested"]


def audit_rows(factory) -> list[tuple[str, str, str | None]]:
    with factory() as s:
        rows = s.scalars(select(AuditEntry).order_by(AuditEntry.id))
        return [(r.action, r.actor, r.details.get("action_name")) for r in rows]


def review(factory, record_id, actions, *, override=False) -> decide.Decided:
    body = decide.ReviewIn(
        label="DAMAGED_PACKAGE", actions=actions, reviewer="ann", override=override
    )
    with factory.begin() as s:
        tenant = tenants.require(s, "acme")
        return decide.submit(s, tenant, record_id, body, actor=ANN)


def queued(factory, name="acme") -> queue.Queue:
    with factory() as s:
        tenant = tenants.require(s, name)
        return queue.queue(s, tenant.id, now=tenant.created_at)


# -- the write ------------------------------------------------------------------------------


def test_a_costly_action_waits_and_the_others_go_out_at_once(any_factory, settings):
    record_id = resolve(any_factory, settings)

    assert statuses(any_factory, record_id) == {
        "OPEN_CARRIER_CLAIM": "RECORDED",
        "RESHIP_ORDER": "AWAITING_APPROVAL",
    }
    enriched, *rest = events(any_factory, record_id)
    assert enriched.type == "record.enriched"
    assert enriched.data["actions"] == ["OPEN_CARRIER_CLAIM", "RESHIP_ORDER"]
    assert enriched.data["awaiting_approval"] == ["RESHIP_ORDER"]
    assert [(e.type, e.data["action"]) for e in rest] == [
        ("action.requested", "OPEN_CARRIER_CLAIM")
    ]
    with any_factory() as s:
        rec = s.get(ExceptionRecord, record_id)
        assert rec.approval_requested_at == rec.enriched_at is not None
    [item] = queued(any_factory).items
    assert (item.record_id, item.kind) == (record_id, "approval")
    assert item.awaiting_approval == ["RESHIP_ORDER"] and item.waiting_since == rec.enriched_at


def test_without_approval_actions_every_action_goes_out_and_nothing_queues(any_factory, settings):
    record_id = resolve(any_factory, settings, {})

    assert set(statuses(any_factory, record_id).values()) == {"RECORDED"}
    assert sorted(requested(any_factory, record_id)) == ["OPEN_CARRIER_CLAIM", "RESHIP_ORDER"]
    assert events(any_factory, record_id)[0].data["awaiting_approval"] == []
    assert queued(any_factory).total == 0


# -- a person's review ----------------------------------------------------------------------


def test_a_costly_action_waits_for_approval_and_goes_out_once_approved(factory, settings):
    record_id = resolve(factory, settings)
    assert requested(factory, record_id) == ["OPEN_CARRIER_CLAIM"]

    done = review(factory, record_id, ["OPEN_CARRIER_CLAIM", "RESHIP_ORDER"])

    assert (done.new_actions, done.approved, done.declined) == (
        ["RESHIP_ORDER"],
        ["RESHIP_ORDER"],
        [],
    )
    assert statuses(factory, record_id) == {
        "OPEN_CARRIER_CLAIM": "RECORDED",
        "RESHIP_ORDER": "RECORDED",
    }
    assert requested(factory, record_id) == ["OPEN_CARRIER_CLAIM", "RESHIP_ORDER"]
    reviewed = [e for e in events(factory, record_id) if e.type == "record.reviewed"]
    assert [(e.data["kind"], e.data["approved"], e.data["declined"]) for e in reviewed] == [
        ("approval", ["RESHIP_ORDER"], [])
    ]
    assert audit_rows(factory) == [
        ("record.reviewed", ANN, None),
        (ACTION_APPROVED, ANN, "RESHIP_ORDER"),
    ]
    assert queued(factory).total == 0
    # The approved action's event is one: a second look (an override) sends nothing again.
    review(factory, record_id, ["OPEN_CARRIER_CLAIM", "RESHIP_ORDER"], override=True)
    assert requested(factory, record_id) == ["OPEN_CARRIER_CLAIM", "RESHIP_ORDER"]


def test_a_review_that_leaves_the_costly_action_out_declines_it(factory, settings):
    record_id = resolve(factory, settings)

    done = review(factory, record_id, ["OPEN_CARRIER_CLAIM"])

    assert (done.new_actions, done.approved, done.declined) == ([], [], ["RESHIP_ORDER"])
    assert statuses(factory, record_id)["RESHIP_ORDER"] == "DECLINED"
    assert requested(factory, record_id) == ["OPEN_CARRIER_CLAIM"]
    assert audit_rows(factory)[-1] == (ACTION_DECLINED, ANN, "RESHIP_ORDER")
    assert queued(factory).total == 0


def test_an_override_that_keeps_a_declined_action_approves_it(factory, settings):
    record_id = resolve(factory, settings)
    review(factory, record_id, [])

    done = review(factory, record_id, ["RESHIP_ORDER"], override=True)

    assert done.approved == ["RESHIP_ORDER"] and done.declined == []
    assert statuses(factory, record_id)["RESHIP_ORDER"] == "RECORDED"
    assert requested(factory, record_id) == ["OPEN_CARRIER_CLAIM", "RESHIP_ORDER"]
    assert [a for a, _, _ in audit_rows(factory) if a.startswith("action.")] == [
        ACTION_DECLINED,
        ACTION_APPROVED,
    ]


# -- over the API ---------------------------------------------------------------------------


def test_the_api_lists_an_approval_item_and_its_review_approves(client, factory, settings):
    with factory.begin() as s:
        acme, key = tenants.create_tenant(s, "acme")
        acme.settings = APPROVE_RESHIP
    record_id = resolve(factory, settings)
    headers = {"Authorization": f"Bearer {key}"}

    [item] = client.get("/api/enrichment/reviews/acme", headers=headers).json()["items"]
    assert (item["record_id"], item["kind"]) == (record_id, "approval")
    assert item["awaiting_approval"] == ["RESHIP_ORDER"]
    story = client.get(f"/api/enrichment/records/acme/{item['external_id']}", headers=headers)
    assert story.json()["summary"]["in_review"] is True
    assert {a["action"]: a["status"] for a in story.json()["actions"]} == {
        "OPEN_CARRIER_CLAIM": "RECORDED",
        "RESHIP_ORDER": "AWAITING_APPROVAL",
    }

    body = {"label": "DAMAGED_PACKAGE", "actions": ["OPEN_CARRIER_CLAIM", "RESHIP_ORDER"]}
    r = client.post(f"/api/enrichment/reviews/acme/{record_id}", json=body, headers=headers)

    assert r.status_code == 200, r.text
    assert r.json()["new_actions"] == ["RESHIP_ORDER"]
    assert requested(factory, record_id) == ["OPEN_CARRIER_CLAIM", "RESHIP_ORDER"]
    [(action, actor, name)] = [row for row in audit_rows(factory) if row[0] == ACTION_APPROVED]
    assert actor.startswith("api-key:") and name == "RESHIP_ORDER"


# -- the review page ------------------------------------------------------------------------


def test_the_page_shows_what_waits_for_approval(factory, settings):
    record_id = resolve(factory, settings)
    env = pages.environment()
    with factory() as s:
        tenant = tenants.require(s, "acme")
        rec = s.get(ExceptionRecord, record_id)
        told = story(s, tenant, rec.external_id, now=utcnow())
        common = {"base": "/review/acme", "csrf": "t", "tenant": "acme", "reviewer": "ann"}
        html = env.get_template("record.html").render(
            rec=rec, story=told, draft=Draft(Label.DAMAGED_PACKAGE), kind=queue.kind_of(rec),
            timeline=[], labels=list(Label), allowed=["OPEN_CARRIER_CLAIM", "RESHIP_ORDER"],
            flash=None, held=None, waiting_since=queue.waiting_since(rec), ai_actions=[],
            allowed_by_label={}, **common,
        )  # fmt: skip
        listed = env.get_template("queue.html").render(
            queue=queued(factory), flash=None, filters=review_queue_page.Filters(), now=utcnow(),
            kinds=queue.KINDS, severities=queue.SEVERITIES, labels=list(Label), **common,
        )  # fmt: skip
    assert 'class="tag approval">approval<' in html
    assert "Awaiting approval: RESHIP_ORDER" in html and "waiting for your" in html
    assert "waiting for your approval: RESHIP_ORDER" in listed


# -- the setting ----------------------------------------------------------------------------


def test_the_setting_names_actions_of_the_taxonomy():
    own = TenantSettings.validate({"approval_actions": ["RESHIP_ORDER", "RETRY_PAYMENT"]})
    assert own.approval_actions == {"RESHIP_ORDER", "RETRY_PAYMENT"}
    assert TenantSettings.validate({}).approval_actions == frozenset()
    with pytest.raises(TenantSettingsError, match="'approval_actions' names an unknown action"):
        TenantSettings.validate({"approval_actions": ["ISSUE_REFUND"]})
    with pytest.raises(TenantSettingsError, match="must be a list of action names"):
        TenantSettings.validate({"approval_actions": "RESHIP_ORDER"})


def test_a_stored_unknown_name_is_dropped_and_the_known_ones_still_wait():
    own = TenantSettings.parse({"approval_actions": ["RESHIP_ORDER", "ISSUE_REFUND"]})
    assert own.approval_actions == {"RESHIP_ORDER"}
