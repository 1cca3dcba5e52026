"""Records in over the API: POST /api/enrichment/records/{tenant}, on real PostgreSQL.

The route shares its validation and write path with `enrichment ingest FILE`; these tests
hold the route's own contract: one result per item, idempotent replays, order upserts,
updates versus reopens, body limits, auth, and concurrent posts that merge, not overwrite.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import func, insert, select, text

from enrichment.core import db, tenants
from enrichment.core.models import REOPENED, EnrichmentAttempt, ExceptionRecord, Order, utcnow
from enrichment.ingestion import items as records_in

URL = "/api/enrichment/records/{}"


@pytest.fixture
def keys(factory):
    with factory.begin() as s:
        a, key_a = tenants.create_tenant(s, "a-3pl")
        _, key_b = tenants.create_tenant(s, "b-3pl")
    return {"a-3pl": key_a, "b-3pl": key_b, "a_id": a.id}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def event(kind: str, at: str, source: str = "carrier") -> dict:
    return {"source": source, "type": kind, "at": at, "detail": ""}


def item(ext: str = "EXC-1", order: str = "ORD-1", **changes) -> dict:
    body = {
        "order": {
            "external_id": order,
            "payload": changes.pop("payload", {"name": "#1", "financial_status": "paid"}),
            "events": changes.pop("events", [event("delayed", "2026-11-20T10:00:00Z")]),
        },
        "exception": {
            "external_id": ext,
            "reason_code": changes.pop("reason_code", "CARRIER_DELAY"),
            "severity": changes.pop("severity", "medium"),
            "notes": changes.pop("notes", "customer asked where the parcel is"),
        },
    }
    return {**body, **changes}


def post(client, keys, items: list, tenant: str = "a-3pl"):
    # json.dumps escapes non-ASCII, so even a lone surrogate goes out as valid JSON.
    body = json.dumps({"items": items}).encode()
    headers = {**auth(keys[tenant]), "Content-Type": "application/json"}
    return client.post(URL.format(tenant), content=body, headers=headers)


def results(r) -> list[tuple]:
    assert r.status_code == 200, r.text
    return [(i["index"], i["result"], i["field"], i["reopened"]) for i in r.json()["items"]]


def counts(factory) -> tuple[int, int]:
    with factory() as s:
        orders = s.scalar(select(func.count()).select_from(Order))
        return orders, s.scalar(select(func.count()).select_from(ExceptionRecord))


def stored(factory, ext: str) -> tuple[ExceptionRecord, Order]:
    with factory() as s:
        record = s.scalar(select(ExceptionRecord).where(ExceptionRecord.external_id == ext))
        return record, s.get(Order, record.order_id)


def test_posting_the_same_body_twice_creates_once_then_is_unchanged(client, keys, factory):
    body = [item("EXC-1", "ORD-1"), item("EXC-2", "ORD-2")]

    first = post(client, keys, body)
    again = post(client, keys, body)

    assert first.json() == {
        "tenant": "a-3pl", "created": 2, "updated": 0, "unchanged": 0, "rejected": 0,
        "reopened": 0,
        "items": [
            {"index": 0, "external_id": "EXC-1", "result": "created", "field": None,
             "reason": None, "reopened": False},
            {"index": 1, "external_id": "EXC-2", "result": "created", "field": None,
             "reason": None, "reopened": False},
        ],
    }  # fmt: skip
    assert results(again) == [(0, "unchanged", None, False), (1, "unchanged", None, False)]
    assert again.json()["unchanged"] == 2
    assert counts(factory) == (2, 2)
    record, _ = stored(factory, "EXC-1")
    assert record.tenant_id == keys["a_id"] and record.next_attempt_at <= utcnow()


def test_one_order_with_two_payloads_in_one_body_replays_unchanged(client, keys, factory):
    # Given one body naming one order twice, with an older then a newer payload
    body = [
        item("EXC-1", payload={"name": "#1", "financial_status": "pending"}),
        item("EXC-2", payload={"name": "#1", "financial_status": "paid"}),
    ]

    first, again = post(client, keys, body), post(client, keys, body)

    # Then the last payload wins, and the older snapshot is no change on a replay
    assert [x[1] for x in results(first)] == ["created", "created"]
    assert [x[1] for x in results(again)] == ["unchanged", "unchanged"]
    _, order = stored(factory, "EXC-1")
    assert order.payload["financial_status"] == "paid"


def test_orders_are_upserted_payload_replaced_events_merged(client, keys, factory):
    # Given an order with two events and one exception
    post(client, keys, [item(events=[event("picked", "2026-11-20T09:00:00Z", "wms"),
                                     event("delayed", "2026-11-20T10:00:00Z")])])  # fmt: skip

    # When a second exception on that order brings a new payload, one repeated event
    # (written with another offset) and one new event
    newer = item("EXC-2", payload={"name": "#1", "financial_status": "refunded"}, events=[
        event("delayed", "2026-11-20T11:00:00+01:00"),
        event("lost", "2026-11-21T08:00:00Z"),
    ])  # fmt: skip
    r = post(client, keys, [newer])

    # Then it is created on the same order, whose payload is replaced and events merged
    assert results(r) == [(0, "created", None, False)]
    assert counts(factory) == (1, 2)
    first, order = stored(factory, "EXC-1")
    second, _ = stored(factory, "EXC-2")
    assert first.order_id == second.order_id == order.id
    assert order.payload == {"name": "#1", "financial_status": "refunded"}
    assert [(e["type"], e["at"]) for e in order.events] == [
        ("picked", "2026-11-20T09:00:00Z"),
        ("delayed", "2026-11-20T10:00:00Z"),
        ("lost", "2026-11-21T08:00:00Z"),
    ]


def test_a_rejected_item_writes_nothing_and_the_others_go_in(client, keys, factory):
    post(client, keys, [item("EXC-STORED", "ORD-STORED")])
    bad_at = item("EXC-B", "ORD-NEW-B", events=[event("delayed", "2026-11-20T10:00:00")])
    body = [
        item("EXC-A", "ORD-A"),  # 0 good
        item("EXC-C", "ORD-NEW-C", severity="urgent"),  # 1 bad severity
        bad_at,  # 2 naive datetime in an event
        item("EXC-D", "ORD-NEW-D", tenant="b-3pl"),  # 3 another tenant
        item("EXC-STORED", "ORD-ELSEWHERE"),  # 4 moves an exception
        item("EXC-A", "ORD-NEW-E"),  # 5 repeats item 0's exception
        "not an object",  # 6
        item("EXC-F", "ORD-F", tenant="a-3pl"),  # 7 good, names its own tenant
        item("EXC-G", "ORD-NEW-G", notes="\ud800"),  # 8 a lone surrogate
    ]

    r = post(client, keys, body)

    assert results(r) == [
        (0, "created", None, False),
        (1, "rejected", "exception.severity", False),
        (2, "rejected", "order.events.0.at", False),
        (3, "rejected", "tenant", False),
        (4, "rejected", "order.external_id", False),
        (5, "rejected", "exception.external_id", False),
        (6, "rejected", None, False),
        (7, "created", None, False),
        (8, "rejected", None, False),
    ]
    answer = r.json()
    assert (answer["created"], answer["rejected"]) == (2, 7)
    reasons = [i["reason"] for i in answer["items"]]
    assert "timezone" in reasons[2] and "'b-3pl'" in reasons[3]
    assert "first on item 0" in reasons[5] and "surrogate" in reasons[8]
    assert answer["items"][1]["external_id"] == "EXC-C"
    with factory() as s:
        orders = set(s.scalars(select(Order.external_id)))
        records = set(s.scalars(select(ExceptionRecord.external_id)))
    assert orders == {"ORD-STORED", "ORD-A", "ORD-F"}
    assert records == {"EXC-STORED", "EXC-A", "EXC-F"}


def _enrich(factory, ext: str, **extra) -> None:
    """Stand in for the fleet: give the record a finished AI result."""
    values = {
        "ai_label": "CARRIER_DELAY", "ai_confidence": 0.91, "ai_notes": "late scan",
        "ai_analysis": {"summary": "late"}, "ai_resolution": {"actions": ["notify"]},
        "ai_source": {"classification": {"provider": "local"}},
        "enrichment_state": {"classification": {"status": "COMPLETED"}},
        "enriched_at": utcnow(), **extra,
    }  # fmt: skip
    with factory.begin() as s:
        s.query(ExceptionRecord).filter_by(external_id=ext).update(values)


def _audit(factory, record_id: int) -> list[EnrichmentAttempt]:
    with factory() as s:
        return s.scalars(
            select(EnrichmentAttempt).where(EnrichmentAttempt.record_id == record_id)
        ).all()


def test_changed_inputs_update_and_reopen_only_with_reenrich(client, keys, factory):
    # Given an enriched record
    post(client, keys, [item()])
    _enrich(factory, "EXC-1")

    # When its severity changes without reenrich
    r = post(client, keys, [item(severity="critical")])

    # Then the input is stored, the result kept, and the answer says how to re-enrich
    assert results(r) == [(0, "updated", "exception.severity", False)]
    assert '"reenrich": true' in r.json()["items"][0]["reason"]
    record, _ = stored(factory, "EXC-1")
    assert record.severity == "critical" and record.ai_label == "CARRIER_DELAY"
    assert record.enriched_at is not None and _audit(factory, record.id) == []

    # When its notes change with reenrich, and the same item is posted again
    changed = item(severity="critical", notes="parcel found damaged", reenrich=True)
    reopened = post(client, keys, [changed])
    again = post(client, keys, [changed])

    # Then it is reopened once: AI fields cleared, due now, one audit row with the old result
    assert results(reopened) == [(0, "updated", "exception.notes", True)]
    assert reopened.json()["reopened"] == 1
    assert results(again) == [(0, "unchanged", None, False)]
    record, _ = stored(factory, "EXC-1")
    assert record.notes == "parcel found damaged"
    assert (record.ai_label, record.ai_confidence, record.ai_notes) == (None, None, None)
    assert (record.ai_analysis, record.ai_resolution, record.enriched_at) == (None, None, None)
    assert (record.ai_source, record.enrichment_state, record.enrichment_retry_count) == ({}, {}, 0)
    assert record.next_attempt_at <= utcnow()
    [audit] = _audit(factory, record.id)
    assert (audit.stage, audit.outcome, audit.provider) == ("reopen", REOPENED, "ingest")
    assert (audit.model, audit.prompt_version, audit.latency_s, audit.cost_usd) == (
        None,
        None,
        0,
        0,
    )
    assert audit.detail["ai_label"] == "CARRIER_DELAY" and audit.detail["ai_confidence"] == 0.91
    assert audit.detail["enriched_at"].startswith("20") and audit.detail["escalated_at"] is None
    with factory() as s:  # JSON columns cleared to SQL NULL, not JSON null
        sql_nulls = s.execute(text(
            "SELECT ai_analysis IS NULL AND ai_resolution IS NULL FROM exception_records"
        )).scalar()  # fmt: skip
    assert sql_nulls is True


def test_a_new_event_on_an_escalated_record_reopens_it_with_reenrich(client, keys, factory):
    post(client, keys, [item()])
    _enrich(factory, "EXC-1", enriched_at=None, escalated_at=utcnow(),
            escalation_reason="low confidence", enrichment_retry_count=5)  # fmt: skip
    events = [event("delayed", "2026-11-20T10:00:00Z"), event("lost", "2026-11-22T10:00:00Z")]

    r = post(client, keys, [item(events=events, reenrich=True)])

    assert results(r) == [(0, "updated", "order.events", True)]
    record, order = stored(factory, "EXC-1")
    assert (record.escalated_at, record.escalation_reason) == (None, None)
    assert record.enrichment_retry_count == 0 and len(order.events) == 2
    [audit] = _audit(factory, record.id)
    assert audit.detail["escalation_reason"] == "low confidence"


def test_an_unenriched_record_is_just_updated(client, keys, factory):
    post(client, keys, [item()])

    r = post(client, keys, [item(reason_code="DAMAGED", reenrich=True)])

    assert results(r) == [(0, "updated", "exception.reason_code", False)]
    assert r.json()["items"][0]["reason"] is None
    record, _ = stored(factory, "EXC-1")
    assert record.reason_code == "DAMAGED" and _audit(factory, record.id) == []


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"items": [', "not valid JSON"),
        (b'{"items": [{"a": NaN}]}', "not valid JSON"),
        (b"[]", 'JSON object {"items"'),
        (b'{"items": []}', "items has 0 entries; send 1 to 1000"),
        (b'{"items": [' + b",".join([b"{}"] * 1001) + b"]}", "items has 1001 entries"),
        (b'{"items": [{}], "extra": 1}', "unknown key(s) in body: 'extra'"),
    ],
)
def test_a_malformed_body_is_422_with_one_line(client, keys, factory, body, fragment):
    r = client.post(URL.format("a-3pl"), content=body, headers=auth(keys["a-3pl"]))

    assert r.status_code == 422 and fragment in r.json()["detail"]
    assert counts(factory) == (0, 0)


def test_an_oversized_body_is_413_declared_or_chunked(client, keys, factory):
    limit = records_in.MAX_BODY_BYTES
    declared = client.post(
        URL.format("a-3pl"), content=b" " * (limit + 1), headers=auth(keys["a-3pl"])
    )
    chunked = client.post(
        URL.format("a-3pl"),
        content=(b" " * 1_000_000 for _ in range(limit // 1_000_000 + 1)),
        headers=auth(keys["a-3pl"]),
    )

    assert declared.status_code == 413 and "limit" in declared.json()["detail"]
    assert "content-length" not in chunked.request.headers
    assert chunked.status_code == 413 and "limit" in chunked.json()["detail"]


def test_keys_open_only_their_own_tenant(client, keys, factory):
    others = post(client, keys, [item()], tenant="b-3pl")
    wrong = client.post(URL.format("a-3pl"), json={"items": [item()]}, headers=auth(keys["b-3pl"]))
    missing = client.post(URL.format("a-3pl"), json={"items": [item()]})

    assert others.status_code == 200
    assert wrong.status_code == 404 and missing.status_code == 401
    with factory() as s:
        owners = set(s.scalars(select(ExceptionRecord.tenant_id)))
    assert counts(factory) == (1, 1) and keys["a_id"] not in owners


def test_the_route_documents_its_body_and_errors(client):
    op = client.get("/openapi.json").json()["paths"]["/api/enrichment/records/{tenant}"]["post"]

    assert {"401", "404", "413", "422"} <= set(op["responses"])
    assert op["responses"]["413"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/Problem"
    )
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["items"]["maxItems"] == 1000


def _waiting_on_locks(engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(text(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ))  # fmt: skip


def test_concurrent_posts_on_one_new_order_merge_every_event(client, keys, factory, pg_url):
    # Given an uncommitted writer holding order ORD-C (so both posts will collide on it)
    engine = db.get_engine(pg_url)
    holder = engine.connect()
    held = holder.begin()
    holder.execute(
        insert(Order).values(
            tenant_id=keys["a_id"],
            external_id="ORD-C",
            payload={},
            events=[event("e0", "2026-11-20T00:00:00Z")],
        )
    )
    shared = item("EXC-SHARED", "ORD-C", events=[event("shared", "2026-11-20T03:00:00Z")])
    bodies = [
        [item("EXC-C1", "ORD-C", events=[event("e1", "2026-11-20T01:00:00Z")]), shared],
        [item("EXC-C2", "ORD-C", events=[event("e2", "2026-11-20T02:00:00Z")]), shared],
    ]  # fmt: skip
    answers: list = [None, None]

    def send(n: int) -> None:
        answers[n] = post(client, keys, bodies[n])

    # When two posts run at once, both blocked on that order until its writer commits
    threads = [threading.Thread(target=send, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while _waiting_on_locks(engine) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _waiting_on_locks(engine) == 2
    held.commit()
    holder.close()
    for t in threads:
        t.join(timeout=30)

    # Then neither fails, the shared exception is stored once, and no event is lost
    assert [a.status_code for a in answers] == [200, 200]
    shared_results = sorted(a.json()["items"][1]["result"] for a in answers)
    assert shared_results == ["created", "unchanged"]
    assert [a.json()["items"][0]["result"] for a in answers] == ["created", "created"]
    assert counts(factory) == (1, 3)
    _, order = stored(factory, "EXC-SHARED")
    assert [e["type"] for e in order.events] == ["e0", "e1", "e2", "shared"]
