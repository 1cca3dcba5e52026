"""Every decision writes exactly one event, in the same statement: on PostgreSQL and SQLite."""

import json

from sqlalchemy import select

from enrichment.core.errors import PermanentError
from enrichment.core.models import OutboxEvent, ResolutionAction
from enrichment.core.outbox import body, webhook_id
from enrichment.core.selection import claim_due
from tests.conftest import with_settings
from tests.factories import make_record, make_tenant
from tests.scripted import ScriptedProvider
from tests.test_pipeline import run_chain


def enrich(factory, settings, provider):
    with factory.begin() as s:
        rec = make_record(s, make_tenant(s, "acme"))
        record_id, external_id = rec.id, rec.external_id
    with factory.begin() as s:
        [claim] = claim_due(s, settings)
    run_chain(factory, provider, settings, record_id, claim.lease_token)
    with factory() as s:
        events = s.scalars(select(OutboxEvent).order_by(OutboxEvent.id)).all()
        actions = {a.id: a.action for a in s.scalars(select(ResolutionAction))}
    return external_id, events, actions


def test_an_enriched_record_has_one_enriched_event_then_one_per_action(any_factory, settings):
    external_id, events, actions = enrich(any_factory, settings, ScriptedProvider())
    assert [e.type for e in events] == ["record.enriched"] + ["action.requested"] * len(actions)
    enriched = events[0].data
    assert enriched["record"] == external_id and enriched["tenant"] == "acme"
    assert (enriched["label"], enriched["confidence"]) == ("DAMAGED_PACKAGE", 0.92)
    assert enriched["analysis"]["summary"] and enriched["actions"]
    assert sorted(enriched["actions"]) == sorted(actions.values())
    requested = {e.action_id: e.data for e in events[1:]}
    assert {i: d["action"] for i, d in requested.items()} == actions
    assert all(d["action_id"] == i and d["record"] == external_id for i, d in requested.items())
    assert {e.status for e in events} == {"pending"}
    assert all(e.attempts == 0 and e.next_delivery_at == e.created_at for e in events)
    assert events[0].action_id is None
    if any_factory().get_bind().dialect.name == "postgresql":  # the writing transaction's id
        assert len({e.tx for e in events}) == 1 and events[0].tx > 0


def test_an_escalation_has_one_escalated_event_and_a_failure_none(any_factory, settings):
    provider = ScriptedProvider(classify=[PermanentError("the model refused")])
    external_id, events, actions = enrich(any_factory, settings, provider)
    assert actions == {}
    [event] = events
    assert event.type == "record.escalated" and event.data["record"] == external_id
    assert event.data["stage"] == "classification" and "refused" in event.data["reason"]


def test_a_stale_write_writes_no_event(factory, settings):
    """A second delivery of a finished chain (an old lease token) decides nothing."""
    with factory.begin() as s:
        record_id = make_record(s, make_tenant(s, "acme")).id
    with factory.begin() as s:
        [claim] = claim_due(s, settings)
    run_chain(factory, ScriptedProvider(), settings, record_id, claim.lease_token)
    kinds, _ = run_chain(factory, ScriptedProvider(), settings, record_id, claim.lease_token)
    assert kinds == ["stale"]
    with factory() as s:
        assert s.query(OutboxEvent).filter_by(type="record.enriched").count() == 1


def test_the_body_is_stable_and_the_id_follows_the_row(factory, settings):
    enrich(factory, with_settings(settings), ScriptedProvider())
    with factory() as s:
        event = s.scalars(select(OutboxEvent).order_by(OutboxEvent.id)).first()
    once = body(event.type, event.data, event.created_at)
    assert once == body(event.type, event.data, event.created_at)
    assert json.loads(once)["type"] == "record.enriched"
    assert webhook_id(event.id) == f"evt_{event.id}"
