"""Every query path of the API, the CLI and the tasks is scoped to its tenant.

Given tenants a-3pl (4 records, 1 enriched, 1 escalated: the record the review routes name)
and b-3pl (7 records, all escalated, distinct names and ids), when A's key, A's CLI commands
and A's tasks are used, then B's data never appears in an answer and B's records are never
touched.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from enrichment.cli import report as report_cli
from enrichment.core import reviewers, selection, tenants
from enrichment.core.models import ExceptionRecord, Order, ResolutionAction, utcnow
from enrichment.core.settings import get_settings
from tests.factories import make_record
from tests.routes import tenant_routes

# 200: the most any route's limit allows (the review queue's); more than the world holds.
ROUTES = tenant_routes("?limit=200")
# A valid body for each route that wants one; a new one without it fails with 422 here.
BODIES = {
    ("POST", "/api/enrichment/records/{t}?limit=200"): {
        "items": [
            {
                "order": {"external_id": "o-new", "payload": {}, "events": []},
                "exception": {"external_id": "x-new", "reason_code": "DAMAGE", "severity": "low"},
            }
        ]
    },
    ("POST", "/api/enrichment/actions/{t}/{action_id}?limit=200"): {
        "outcome": "done",
        "note": "ok",
    },
    ("POST", "/api/enrichment/reviews/{t}/{record_id}?limit=200"): {
        "label": "DAMAGED_PACKAGE",
        "actions": ["RESHIP_ORDER"],
        "note": "checked",
    },
    ("POST", "/api/enrichment/reviews/{t}/{record_id}/requeue?limit=200"): None,
    ("POST", "/api/enrichment/reviewers/{t}?limit=200"): {"name": "Nia"},
    ("POST", "/api/enrichment/orders/{t}?limit=200"): {
        "items": [{"external_id": "o-new", "payload": {}, "events": []}]
    },
    ("POST", "/api/enrichment/orders/{t}/{external_id}/events?limit=200"): {
        "events": [{"source": "wms", "type": "picked", "at": "2026-11-20T10:00:00Z"}]
    },
}


@pytest.fixture
def world(factory):
    """Both tenants, their keys and their record ids; B's external ids carry 'bbsecret',
    except one that A has too ('shared-1'), whose notes do; A's copy has an action."""
    with factory.begin() as s:
        a, key_a = tenants.create_tenant(s, "a-3pl")
        b, key_b = tenants.create_tenant(s, "b-3pl")
        shared = make_record(s, a)
        shared.external_id = "shared-1"
        s.get(Order, shared.order_id).external_id = "shared-1"  # the order routes name it
        action = ResolutionAction(tenant_id=a.id, record_id=shared.id, action="RESHIP_ORDER")
        s.add(action)
        s.flush()
        ids_a = [shared.id, make_record(s, a).id]
        ids_a.append(
            make_record(s, a, ai_label="OTHER", ai_confidence=0.9, enriched_at=utcnow()).id
        )
        ids_a.append(make_record(s, a, escalated_at=utcnow(), escalation_reason="x").id)
        ids_b = []
        for _ in range(7):
            rec = make_record(s, b, escalated_at=utcnow(), escalation_reason="b")
            rec.external_id = f"bbsecret-{rec.id}"
            ids_b.append(rec.id)
        rec.external_id, rec.notes = "shared-1", "bbsecret notes"
        for tenant in (a, b):  # each has an "ana": B's key revokes neither A's nor its own
            reviewers.add(s, tenant.id, "ana")
    # A's escalated record: in A's review queue, so A's review and requeue answer 200.
    params = {
        "external_id": "shared-1", "action_id": action.id, "record_id": ids_a[3], "name": "ana",
    }  # fmt: skip
    return {"keys": {"a": key_a, "b": key_b}, "a": ids_a, "b": ids_b, "params": params}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def snapshot(factory) -> dict[int, tuple]:
    with factory() as s:
        rows = s.scalars(select(ExceptionRecord)).all()
        return {
            r.id: (r.lease_token, r.escalated_at, r.enrichment_retry_count, r.next_attempt_at)
            for r in rows
        }


@pytest.mark.parametrize(("method", "route"), ROUTES)
def test_a_key_for_b_opens_nothing_of_a(client, world, enqueued, method, route):
    path = route.format(t="a-3pl", **world["params"])
    body = BODIES.get((method, route))
    r = client.request(method, path, json=body, headers=auth(world["keys"]["b"]))
    assert r.status_code in (403, 404)
    assert "a-3pl" not in r.text.replace("tenant 'a-3pl' not found", "")
    assert enqueued == []


@pytest.mark.parametrize(("method", "route"), ROUTES)
def test_a_own_answers_hold_nothing_of_b(client, world, enqueued, factory, method, route):
    before = snapshot(factory)
    path = route.format(t="a-3pl", **world["params"])
    body = BODIES.get((method, route))
    r = client.request(method, path, json=body, headers=auth(world["keys"]["a"]))
    assert r.status_code in (200, 201), r.text  # 201: a reviewer added
    assert "b-3pl" not in r.text and "bbsecret" not in r.text
    after = snapshot(factory)
    assert all(before[rid] == after[rid] for rid in world["b"])
    assert {args[0] for args in enqueued} <= set(world["a"])


def test_backlog_and_health_count_only_a(client, world):
    key = auth(world["keys"]["a"])
    backlog = client.get("/api/enrichment/backlog/a-3pl?limit=500", headers=key).json()
    health = client.get("/api/enrichment/health/a-3pl", headers=key).json()
    assert health["backlog_records"] == 2 and health["escalated_records"] == 1
    listed = [item for item in _walk(backlog) if isinstance(item, dict) and "record_id" in item]
    assert {item["record_id"] for item in listed} <= set(world["a"])


def test_a_key_neither_lists_nor_decides_b_queued_records(client, world, factory):
    key = auth(world["keys"]["a"])
    queue = client.get("/api/enrichment/reviews/a-3pl", headers=key).json()
    assert [item["record_id"] for item in queue["items"]] == [world["a"][3]]
    before = snapshot(factory)
    for b_id in world["b"][:2]:
        path = f"/api/enrichment/reviews/a-3pl/{b_id}"
        body = BODIES[("POST", "/api/enrichment/reviews/{t}/{record_id}?limit=200")]
        assert client.post(path, json=body, headers=key).status_code == 404
        assert client.post(f"{path}/requeue", headers=key).status_code == 404
    assert snapshot(factory) == before


def _walk(node):
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    for child in children:
        yield from _walk(child)


@pytest.mark.parametrize("command", [report_cli.status, report_cli.report])
def test_cli_status_and_report_show_only_a(world, capsys, pg_url, monkeypatch, command):
    monkeypatch.setenv("DATABASE_URL", pg_url)
    get_settings.cache_clear()
    try:
        command("a-3pl")
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr().out
    assert out.startswith("a-3pl:") and "b-3pl" not in out
    assert re.search(r"backlog\s+2 records", out) and re.search(r"escalated\s+1 record\n", out)
    assert "7 records" not in out


def test_claims_for_a_never_take_b(factory, settings, world):
    with factory.begin() as s:
        a_id = tenants.require(s, "a-3pl").id
        claims = selection.claim_due(s, settings, tenant_id=a_id)
    assert {c.record_id for c in claims} == set(world["a"][:2])


def test_requeue_for_a_never_touches_b(factory, world):
    before = snapshot(factory)
    with factory.begin() as s:
        reset = selection.requeue(s, tenants.require(s, "a-3pl").id)
    assert reset == 3  # a's two due records and its escalated one; never its enriched one
    after = snapshot(factory)
    assert all(before[rid] == after[rid] for rid in world["b"])


def test_sweep_and_requeue_tasks_for_a_enqueue_only_a(factory, world, redis_client, monkeypatch):
    from workers import tasks

    sent = []
    monkeypatch.setattr(tasks, "enqueue_chain", lambda rid, token, countdown: sent.append(rid))
    monkeypatch.setattr(tasks.sweep, "delay", lambda tenant: tasks.sweep.run(tenant))
    before = snapshot(factory)

    tasks.requeue.run("a-3pl")

    assert sent and set(sent) <= set(world["a"])
    after = snapshot(factory)
    assert all(before[rid] == after[rid] for rid in world["b"])
