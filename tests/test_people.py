"""Reviewers as accounts and the audit log, on the test database: the CLI and the API add,
list and revoke reviewers; the review API checks the name a review gives; every change,
sign-in, refusal, review and requeue leaves one audit row that says who, and the database
refuses to change or delete one (both dialects)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from enrichment.api import app, deps
from enrichment.core import audit, reviewers, tenants
from enrichment.core.audit import AuditEntry
from enrichment.core.models import ExceptionRecord, Review, utcnow
from enrichment.core.review_sessions import SigninRefusal
from enrichment.core.settings import ReviewConfig
from enrichment.metrics import monitor
from tests.conftest import with_settings
from tests.factories import make_record

REVIEWERS, AUDIT = "/api/enrichment/reviewers/{}", "/api/enrichment/audit/{}"


@pytest.fixture
def world(factory) -> dict:
    with factory.begin() as s:
        acme, key = tenants.create_tenant(s, "acme")
        other, other_key = tenants.create_tenant(s, "other-3pl")
        esc = make_record(s, acme, escalated_at=utcnow() - timedelta(hours=1))
        esc2 = make_record(s, acme, escalated_at=utcnow())
        make_record(s, other, escalated_at=utcnow())
    return {"key": key, "other_key": other_key, "esc": esc.id, "esc2": esc2.id, "id": acme.id}


@pytest.fixture
def api(settings, world):
    limits = ReviewConfig(secret="people-secret", signin_address_max=3)
    app.dependency_overrides[deps.app_settings] = lambda: with_settings(settings, reviews=limits)
    with TestClient(app, client=("203.0.113.9", 40000), follow_redirects=False) as http:
        http.headers["Authorization"] = f"Bearer {world['key']}"
        yield http
    app.dependency_overrides.clear()


def rows(factory, tenant_id: int) -> list[tuple[str, str, str | None]]:
    with factory() as s:
        return [(r.actor, r.action, r.subject) for r in audit.entries(s, tenant_id, limit=500)]


def key_actor(factory) -> str:
    with factory() as s:
        return audit.api_key_actor(tenants.require(s, "acme").api_key_hash)


def test_the_api_adds_lists_and_revokes_reviewers_and_shows_a_key_once(api, factory, world):
    added = api.post(REVIEWERS.format("acme"), json={"name": "  Ana Lima "})
    assert added.status_code == 201, added.text
    assert added.json()["name"] == "Ana Lima" and added.json()["key"].startswith("rev_")
    key = added.json()["key"]

    assert api.post(REVIEWERS.format("acme"), json={"name": "Ana Lima"}).status_code == 409
    assert api.post(REVIEWERS.format("acme"), json={"name": "bell\x07"}).status_code == 422
    listed = api.get(REVIEWERS.format("acme")).json()
    assert [r["name"] for r in listed["reviewers"]] == ["Ana Lima"]
    assert key not in api.get(REVIEWERS.format("acme")).text

    gone = api.delete(REVIEWERS.format("acme") + "/Ana Lima")
    assert gone.status_code == 200 and gone.json()["revoked_at"] is not None
    assert api.delete(REVIEWERS.format("acme") + "/Ana Lima").status_code == 404
    assert api.get(REVIEWERS.format("acme")).json()["reviewers"] == []
    assert len(api.get(REVIEWERS.format("acme") + "?revoked=true").json()["reviewers"]) == 1
    with factory() as s:
        assert reviewers.by_key(s, world["id"], key) is None  # the key is dead
    # the name is free again: a new row with a new key
    assert api.post(REVIEWERS.format("acme"), json={"name": "Ana Lima"}).status_code == 201

    who = key_actor(factory)
    assert rows(factory, world["id"]) == [
        (who, "reviewer.added", "Ana Lima"),
        (who, "reviewer.revoked", "Ana Lima"),
        (who, "reviewer.added", "Ana Lima"),
    ]


def test_a_review_may_name_only_a_registered_reviewer_else_it_is_the_keys(api, factory, world):
    with factory.begin() as s:
        reviewers.add(s, world["id"], "ana")
    path = "/api/enrichment/reviews/acme/{}"
    body = {"label": "OTHER", "actions": []}

    unknown = api.post(path.format(world["esc"]), json={**body, "reviewer": "mallory"})
    assert unknown.status_code == 403 and "not a registered reviewer" in unknown.json()["detail"]
    named = api.post(path.format(world["esc"]), json={**body, "reviewer": "ana"})
    unnamed = api.post(path.format(world["esc2"]), json=body)
    assert named.status_code == unnamed.status_code == 200, (named.text, unnamed.text)

    who = key_actor(factory)
    with factory() as s:
        signed = {r.record_id: r.reviewer for r in s.scalars(select(Review))}
        details = [e.details for e in s.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert signed == {world["esc"]: "ana", world["esc2"]: who}  # never "mallory"
    assert [r[:2] for r in rows(factory, world["id"])] == [(who, "record.reviewed")] * 2
    assert [d["reviewer"] for d in details] == ["ana", who]


def test_the_page_logs_sign_ins_refusals_decisions_requeues_and_sign_outs(api, factory, world):
    with factory.begin() as s:
        key = reviewers.add(s, world["id"], "Ada")[1]
    page = TestClient(app, client=("198.51.100.7", 40000), follow_redirects=False)

    def csrf(path: str) -> str:
        return re.search(r'name="csrf" value="([^"]+)"', page.get(path).text).group(1)

    login = "/review/acme/login"
    wrong = page.post(login, data={"csrf": csrf(login), "key": "rev_wrong"})
    assert wrong.status_code == 401
    assert page.post(login, data={"csrf": csrf(login), "key": key}).status_code == 303
    token = csrf("/review/acme")
    decided = page.post(f"/review/acme/{world['esc']}", data={"csrf": token, "label": "OTHER"})
    assert decided.status_code == 303
    assert page.post(f"/review/acme/{world['esc2']}/requeue", data={"csrf": token}).is_redirect
    assert page.post("/review/acme/logout", data={"csrf": token}).status_code == 303
    page.close()

    ada = "reviewer:Ada"
    with factory() as s:
        ext = {i: s.get(ExceptionRecord, i).external_id for i in (world["esc"], world["esc2"])}
    assert rows(factory, world["id"]) == [
        ("address:198.51.100.7", "review.signin_refused", None),
        (ada, "review.signed_in", "Ada"),
        (ada, "record.reviewed", ext[world["esc"]]),
        (ada, "record.requeued", ext[world["esc2"]]),
        (ada, "review.signed_out", "Ada"),
    ]
    with factory() as s:
        secrets = " ".join(str(e.details) + e.actor for e in s.scalars(select(AuditEntry)))
    assert key not in secrets and "rev_wrong" not in secrets


def test_the_audit_route_pages_filters_and_keeps_to_the_tenant(api, factory, world):
    with factory.begin() as s:
        for n in range(5):
            audit.record(s, world["id"], "cli:ops", audit.REVIEWER_ADDED, f"r{n}")
        other = tenants.require(s, "other-3pl")
        audit.record(s, other.id, "cli:ops", audit.REVIEWER_ADDED, "theirs")
    first = api.get(AUDIT.format("acme") + "?limit=3").json()
    assert [i["subject"] for i in first["items"]] == ["r0", "r1", "r2"]
    rest = api.get(AUDIT.format("acme") + f"?after={first['next_after']}").json()
    assert [i["subject"] for i in rest["items"]] == ["r3", "r4"] and rest["next_after"] is None
    none = api.get(AUDIT.format("acme") + "?action=review.signed_in").json()
    assert none["items"] == []
    theirs = api.get(
        AUDIT.format("acme"), headers={"Authorization": f"Bearer {world['other_key']}"}
    )
    assert theirs.status_code == 404


def test_the_cli_manages_reviewers_and_prints_the_audit_log(cli, factory, world):
    code, out, _ = cli("reviewer", "add", "acme", "Bo")
    assert code == 0 and re.search(r"key .*: rev_\S+$", out.strip())
    assert cli("reviewer", "add", "acme", "Bo")[2].strip() == (
        "enrichment: reviewer 'Bo' exists; revoke it first for a new key"
    )
    assert cli("reviewer", "list", "acme")[1].startswith("Bo  added ")
    assert cli("reviewer", "revoke", "acme", "Nobody")[2].strip() == (
        "enrichment: no active reviewer 'Nobody'"
    )
    assert cli("reviewer", "revoke", "acme", "Bo")[0] == 0
    assert cli("tenant-key", "acme", "--rotate")[0] == 0
    assert cli("webhook", "acme", "https://8.8.8.8/hooks/secret-path")[0] == 0
    assert cli("reviewer", "add", "nobody-3pl", "X")[2].strip() == (
        "enrichment: unknown tenant 'nobody-3pl'"
    )

    code, out, err = cli("audit", "acme")
    assert code == 0 and err == ""
    lines = out.strip().splitlines()
    assert [line.split()[4] for line in lines] == [
        "reviewer.added", "reviewer.revoked", "tenant.api_key_rotated", "tenant.webhook_changed",
    ]  # fmt: skip
    assert all(line.split()[3].startswith("cli:") for line in lines)
    assert "8.8.8.8" in lines[-1] and "secret-path" not in out  # the host, not the URL


@pytest.mark.parametrize("statement", ["UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"])
def test_the_database_refuses_to_change_or_delete_an_audit_row(any_factory, statement):
    with any_factory.begin() as s:
        tenant, _ = tenants.create_tenant(s, "acme")
        audit.record(s, tenant.id, "cli:ops", audit.API_KEY_ROTATED, "acme")
    with pytest.raises(DBAPIError, match="append-only"), any_factory.begin() as s:
        s.execute(text(statement))
    with any_factory() as s:
        assert s.scalars(select(AuditEntry.actor)).all() == ["cli:ops"]


def test_the_monitor_counts_each_tenants_wrong_keys_of_the_last_5_min(factory, settings, world):
    now = utcnow()
    with factory.begin() as s:
        other = tenants.require(s, "other-3pl")
        for tenant_id, ago_s in [(world["id"], 10), (world["id"], 299), (world["id"], 301)]:
            refused_at = now - timedelta(seconds=ago_s)
            s.add(SigninRefusal(tenant_id=tenant_id, address="a", refused_at=refused_at))
        s.add(SigninRefusal(tenant_id=other.id, address="a", refused_at=now))
    with factory() as s:
        acme = tenants.require(s, "acme")
        snap = monitor.measure(s, acme, settings, settings.monitor, now=now)
    assert snap.signin_refusals == 2  # the one of 301 s ago and the other tenant's: not
