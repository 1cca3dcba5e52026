"""Reprocessing by hand, by the ids a person types.

Given escalated records or dead events, when an operator runs `enrichment requeue TENANT
EXTERNAL_ID…` or `enrichment redeliver TENANT` with a real worker running, then the records
come back enriched or escalated again (the events delivered), each reset is an audit row by
`cli:<user>`, and an unknown id is one line while the others still go. The review API takes
`ext:<external id>` wherever it took the integer id. A task sent by name with wrong
arguments (`celery call`) is one log line in a real worker, never a traceback.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select

from enrichment.cli import reprocess
from enrichment.core import audit, tenants
from enrichment.core.models import ExceptionRecord, utcnow
from tests.conftest import REDIS_URL
from tests.factories import make_record, make_tenant
from tests.fleet import fleet_env, publisher, start_worker, stop_all, wait_for
from tests.test_delivery import (  # noqa: F401 - fixtures, found by name
    CONFIG,
    connect,
    deliver_until,
    enrich,
    events_of,
    receivers,
    worker_webhooks,
)

ME = audit.cli_actor()


def escalated(factory, tenant: str, external_ids: list[str]) -> dict[str, int]:
    """Records of `tenant` (made if new) the AI gave up on an hour ago: external id -> id."""
    made = {}
    with factory.begin() as s:
        t = tenants.by_name(s, tenant) or make_tenant(s, tenant)
        for ext in external_ids:
            rec = make_record(
                s, t, escalated_at=utcnow() - timedelta(hours=1), enrichment_retry_count=3,
                escalation_reason="classification: provider refused",
            )  # fmt: skip
            rec.external_id = ext
            made[ext] = rec.id
    return made


def records(factory, ids) -> dict[str, ExceptionRecord]:
    with factory() as s:
        rows = s.scalars(select(ExceptionRecord).where(ExceptionRecord.id.in_(list(ids))))
        return {r.external_id: r for r in rows}


def audit_rows(factory, tenant: str) -> list[tuple]:
    with factory() as s:
        rows = audit.entries(s, tenants.require(s, tenant).id)
    return [(r.actor, r.action, r.subject, r.details) for r in rows]


# -- requeue --------------------------------------------------------------------------------


def test_requeue_by_external_ids_waits_until_the_worker_has_decided_them(
    inproc_worker, factory, cli
):
    ids = escalated(factory, "acme", ["EXC-1", "EXC/2", "EXC-3"])

    code, out, err = cli("requeue", "acme", "EXC-1", "EXC/2", "EXC-404", "--wait-s", "90")

    # The unknown id is one line; the others went and the fleet decided them.
    assert code == 1, (out, err)
    assert err.strip().splitlines() == ["EXC-404: no such record of tenant acme"]
    after = records(factory, ids.values())
    assert all(r.enriched_at or r.escalated_at for r in (after["EXC-1"], after["EXC/2"]))
    assert all(r.last_enrichment_attempt for r in (after["EXC-1"], after["EXC/2"]))
    untouched = after["EXC-3"]
    assert untouched.enrichment_retry_count == 3 and untouched.last_enrichment_attempt is None
    lines = out.splitlines()
    assert lines[0] == "tenant acme: 2 records requeued"
    for ext in ("EXC-1", "EXC/2"):
        word = "enriched" if after[ext].enriched_at else "escalated ("
        assert any(line.startswith(f"{ext}: {word}") for line in lines), out
    assert audit_rows(factory, "acme") == [
        (ME, audit.REQUEUED, "EXC-1", {"record_id": ids["EXC-1"]}),
        (ME, audit.REQUEUED, "EXC/2", {"record_id": ids["EXC/2"]}),
    ]


def test_requeue_says_why_a_named_record_was_left_alone(factory, cli):
    with factory.begin() as s:
        done = make_record(s, make_tenant(s, "acme"), enriched_at=utcnow(), ai_label="OTHER")
        done.external_id = "DONE-1"

    code, out, err = cli("requeue", "acme", "DONE-1", "--no-wait")

    assert code == 1 and out.strip() == "tenant acme: 0 records requeued"
    assert err.strip() == (
        'DONE-1: not requeued: already enriched: to enrich it again, ingest it with "reenrich": '
        "true"
    )
    assert audit_rows(factory, "acme") == []


def test_requeue_all_escalated_without_a_fleet_says_nothing_moved(factory, cli, monkeypatch):
    ids = escalated(factory, "acme", ["A-1", "A-2"])
    # No fleet here; the sweep it asks for is not sent, or this session's in-process worker
    # (started by another test) would take it.
    asked = []
    monkeypatch.setattr(reprocess, "_nudge", lambda *args: asked.append(args))

    code, out, err = cli("requeue", "acme", "--all-escalated", "--wait-s", "1")

    assert code == 1 and asked == [("enrichment.sweep", "acme", 1.0)]
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith("enrichment: nothing moved in 1 s: no worker seems to be running")
    )
    assert "waiting for the fleet: 0 of 2 records done" in out
    reset = records(factory, ids.values()).values()
    assert {(r.escalated_at, r.enrichment_retry_count) for r in reset} == {(None, 0)}
    assert audit_rows(factory, "acme") == [(ME, audit.REQUEUED, None, {"reset": 2})]


@pytest.mark.parametrize(
    "argv",
    [
        ("requeue", "acme"),
        ("requeue", "acme", "X-1", "--all-escalated"),
        ("requeue", "nobody", "X"),
    ],
)
def test_a_requeue_mistake_is_one_line_and_changes_nothing(factory, cli, argv):
    ids = escalated(factory, "acme", ["X-1"])

    code, out, err = cli(*argv)

    assert code not in (0, 1) and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert records(factory, ids.values())["X-1"].escalated_at is not None
    assert audit_rows(factory, "acme") == []


# -- redeliver ------------------------------------------------------------------------------


@pytest.mark.usefixtures("inproc_worker", "worker_webhooks")
def test_redeliver_waits_until_the_worker_has_delivered_the_dead_events(
    factory,
    settings,
    receivers,  # noqa: F811 - the fixture imported above
    cli,
):
    r = receivers(fail_rate=1.0, faults=("500",))
    connect(factory, "acme", r)
    enrich(factory, settings, "acme", 2)
    config = replace(CONFIG, max_attempts=2)
    deliver_until(factory, config, lambda: {e.status for e in events_of(factory)} == {"dead"})
    r.fail_rate = 0.0
    dead = events_of(factory, "acme")

    code, out, err = cli("redeliver", "acme", "--wait-s", "60")

    assert code == 0, (out, err)
    assert {(e.status, e.attempts) for e in events_of(factory, "acme")} == {("delivered", 1)}
    lines = out.splitlines()
    assert lines[0] == f"tenant acme: {len(dead)} dead or stopped events made pending again"
    assert sum(line.endswith(": delivered") for line in lines) == len(dead)
    assert audit_rows(factory, "acme") == [(ME, audit.REDELIVERED, None, {"reset": len(dead)})]


# -- the review API by external id ----------------------------------------------------------


@pytest.fixture
def queued(factory):
    ids = escalated(factory, "acme", ["EXC/7", "EXC-8"])
    escalated(factory, "other-3pl", ["THEIRS-1"])
    with factory.begin() as s:
        key = tenants.rotate_key(tenants.require(s, "acme"))
    return {"key": key, **ids}


def test_the_review_routes_take_an_external_id(client, factory, queued):
    auth = {"Authorization": f"Bearer {queued['key']}"}
    body = {"label": "DAMAGED_PACKAGE", "actions": ["OPEN_CARRIER_CLAIM"]}

    decided = client.post("/api/enrichment/reviews/acme/ext:EXC/7", json=body, headers=auth)
    requeued = client.post("/api/enrichment/reviews/acme/ext:EXC-8/requeue", headers=auth)

    assert decided.status_code == 200, decided.text
    assert decided.json()["record_id"] == queued["EXC/7"]
    assert decided.json()["external_id"] == "EXC/7"
    assert requeued.json() == {"record_id": queued["EXC-8"], "requeued": True}
    encoded = client.post("/api/enrichment/reviews/acme/ext:EXC%2F7", json=body, headers=auth)
    assert encoded.status_code == 409  # the same record, reviewed already
    after = records(factory, [queued["EXC/7"], queued["EXC-8"]])
    assert after["EXC/7"].reviewed_at and after["EXC-8"].escalated_at is None
    for path in ("ext:NOPE", "ext:THEIRS-1"):  # unknown, another tenant's
        missing = client.post(f"/api/enrichment/reviews/acme/{path}", json=body, headers=auth)
        assert missing.status_code == 404 and "not found" in missing.json()["detail"]
    huge = client.post(f"/api/enrichment/reviews/acme/{2**31}/requeue", headers=auth)
    assert huge.status_code == 404
    bad = client.post("/api/enrichment/reviews/acme/EXC-8/requeue", headers=auth)
    assert bad.status_code == 422  # neither an integer id nor ext:


def test_the_schema_names_both_forms_of_the_record(client):
    schema = client.get("/openapi.json").json()
    route = schema["paths"]["/api/enrichment/reviews/{tenant}/{record_id}/requeue"]["post"]
    (param,) = [p for p in route["parameters"] if p["name"] == "record_id"]
    assert param["schema"]["type"] == "string" and "ext:" in param["schema"]["pattern"]
    assert "ext:" in param["description"]


# -- `celery call` with wrong arguments -----------------------------------------------------


def test_a_task_called_with_wrong_arguments_is_one_log_line_in_a_real_worker(
    pg_url, redis_client, tmp_path
):
    worker = start_worker(fleet_env(pg_url, REDIS_URL, tmp_path), tmp_path / "w.log", name="w")
    app = publisher(REDIS_URL)
    try:
        app.send_task("enrichment.requeue", ["acme", "12"])  # a string record id
        app.send_task("enrichment.analyze", [1])  # one argument short
        app.send_task("enrichment.sweep", kwargs={"tenants": "acme"})  # no such keyword

        def bad_lines() -> list[dict]:
            lines = [json.loads(x) for x in worker.text().splitlines() if x.startswith("{")]
            return [x for x in lines if x.get("event") == "task.bad_arguments"]

        wait_for(lambda: len(bad_lines()) == 3, timeout_s=60, what="3 lines", proc=worker)
    finally:
        app.close()
        stop_all([worker])
    found = {x["task"]: (x["problem"], x["expected"]) for x in bad_lines()}
    assert found == {
        "enrichment.requeue": (
            "record_id must be int or null, not str '12'",
            "enrichment.requeue(tenant: str, record_id: int | None = None)",
        ),
        "enrichment.analyze": (
            "missing a required argument: 'lease_token'",
            "enrichment.analyze(record_id: int, lease_token: str)",
        ),
        "enrichment.sweep": (
            "got an unexpected keyword argument 'tenants'",
            "enrichment.sweep(tenant: str | None = None)",
        ),
    }
    log = worker.text()
    assert "Traceback" not in log and "TypeError" not in log and "Retry in" not in log
