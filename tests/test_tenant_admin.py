"""Tenants managed without SQL: `enrichment tenant list|show|set|disable|enable` and the
operator's admin API (ENRICHMENT_ADMIN_TOKEN).

Given tenant a-3pl with three due records (and b-3pl beside it), when its settings are set
or it is disabled through the CLI or the admin API, then a bad value is refused in one line
with nothing written, a good one is stored with its audit row and read by the next claim,
and a disabled tenant's records are not claimed and its API key and reviewers are refused
until it is enabled again.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from enrichment.api import app, deps
from enrichment.core import audit, reviewers, selection, tenants
from enrichment.core.models import ExceptionRecord
from enrichment.core.settings import Settings
from tests.factories import make_record
from tests.routes import ADMIN, tenant_routes

TOKEN = "operator-token-for-tests"


@pytest.fixture
def world(factory):
    with factory.begin() as s:
        a, key_a = tenants.create_tenant(s, "a-3pl")
        b, _ = tenants.create_tenant(s, "b-3pl")
        for _ in range(3):
            make_record(s, a)
        make_record(s, b)
        reviewer_key = reviewers.add(s, a.id, "Ada")[1]
    return {"id": a.id, "key": key_a, "reviewer_key": reviewer_key}


@pytest.fixture
def admin(client, settings):
    """The API with ENRICHMENT_ADMIN_TOKEN set."""
    app.dependency_overrides[deps.app_settings] = lambda: replace(settings, admin_token=TOKEN)
    return client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def stored(factory, name: str = "a-3pl") -> tuple[dict, float, object]:
    with factory() as s:
        t = tenants.require(s, name)
        return dict(t.settings), t.confidence_threshold, t.disabled_at


def audit_rows(factory, tenant_id: int) -> list[audit.AuditItem]:
    with factory() as s:
        return audit.entries(s, tenant_id)


def claimed(factory, settings) -> dict[int, int]:
    """One claim over every tenant: records claimed per tenant id."""
    with factory.begin() as s:
        return selection.claim(s, settings, 50).claimed


@pytest.mark.parametrize(
    ("pair", "reason"),
    [
        ("weight=-1", "'weight' must be a number > 0"),
        ("max_in_flight=1.5", "'max_in_flight' must be a whole number >= 0"),
        ("batch_mode=sometimes", "'batch_mode' must be one of auto, never, always"),
        ("wieght=2", "unknown tenant setting 'wieght'"),
        ("confidence_threshold=2", "'confidence_threshold' must be a number in [0, 1]"),
    ],
)
def test_cli_refuses_a_bad_value_in_one_line_and_writes_nothing(cli, factory, world, pair, reason):
    code, out, err = cli("tenant", "set", "a-3pl", "audit_rate=0.5", pair)

    assert code != 0 and out == ""
    assert reason in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert stored(factory) == ({}, Settings.confidence_threshold, None)
    assert audit_rows(factory, world["id"]) == []


def test_cli_set_is_stored_audited_and_read_by_the_next_claim(cli, factory, settings, world):
    assert claimed(factory, settings)[world["id"]] == 3  # no cap: all three
    with factory.begin() as s:  # give them back, as an expired lease would
        s.execute(update(ExceptionRecord).values(lease_token=None, lease_expires_at=None))

    code, out, err = cli("tenant", "set", "a-3pl", "max_in_flight=1", "confidence_threshold=0.8")

    assert code == 0, err
    assert "max_in_flight null -> 1" in out and "confidence_threshold" in out
    own, threshold, _ = stored(factory)
    assert own == {"max_in_flight": 1} and threshold == 0.8
    assert claimed(factory, settings)[world["id"]] == 1  # the next claim reads the cap
    [row] = audit_rows(factory, world["id"])
    assert row.action == audit.SETTINGS_CHANGED and row.actor.startswith("cli:")
    assert row.details == {
        "max_in_flight": {"from": None, "to": 1},
        "confidence_threshold": {"from": Settings.confidence_threshold, "to": 0.8},
    }


def test_null_removes_a_key_and_show_marks_defaults_and_masks_secrets(cli, factory, world):
    assert cli("tenant", "set", "a-3pl", "weight=2", "pagerduty_routing_key=pd-secret-1")[0] == 0
    assert cli("tenant", "set", "a-3pl", "weight=null")[0] == 0

    code, out, _ = cli("tenant", "show", "a-3pl")

    assert code == 0 and out.startswith("a-3pl: enabled")
    assert re.search(r"weight\s+1\.0\s+\(default\)", out)
    assert re.search(r"pagerduty_routing_key\s+\"\(secret\)\"\n", out)
    assert "pd-secret-1" not in out
    assert stored(factory)[0] == {"pagerduty_routing_key": "pd-secret-1"}
    first, second = audit_rows(factory, world["id"])
    assert first.details["pagerduty_routing_key"] == {"from": None, "to": "(secret)"}
    assert second.details == {"weight": {"from": 2, "to": None}}
    assert "pd-secret-1" not in str([first.details, second.details])


def test_disable_stops_the_claim_the_key_and_the_review_page_enable_restores(
    cli, client, factory, settings, world
):
    code, out, _ = cli("tenant", "disable", "a-3pl")
    assert code == 0 and "disabled" in out

    assert world["id"] not in claimed(factory, settings)  # b-3pl's record is claimed alone
    health = client.get("/api/enrichment/health/a-3pl", headers=bearer(world["key"]))
    assert health.status_code == 403 and health.json() == {"detail": "tenant a-3pl is disabled"}
    page = TestClient(app, follow_redirects=False)
    login = "/review/a-3pl/login"
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.get(login).text).group(1)
    signed = page.post(login, data={"csrf": csrf, "key": world["reviewer_key"]})
    assert signed.status_code == 403 and "tenant a-3pl is disabled" in signed.text
    _, _, disabled_at = stored(factory)
    assert disabled_at is not None
    code, out, _ = cli("tenant", "list")
    assert re.search(r"a-3pl\s+disabled", out) and re.search(r"b-3pl\s+enabled", out)

    assert cli("tenant", "enable", "a-3pl")[0] == 0

    assert claimed(factory, settings)[world["id"]] == 3
    again = client.get("/api/enrichment/health/a-3pl", headers=bearer(world["key"]))
    assert again.status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.get(login).text).group(1)
    assert page.post(login, data={"csrf": csrf, "key": world["reviewer_key"]}).status_code == 303
    actions = [(r.action, r.actor.startswith("cli:")) for r in audit_rows(factory, world["id"])]
    assert (audit.TENANT_DISABLED, True) in actions and (audit.TENANT_ENABLED, True) in actions


def test_admin_api_is_closed_without_a_token_and_wants_the_token(client, settings, world):
    closed = client.get("/api/admin/tenants", headers=bearer(TOKEN))
    assert closed.status_code == 403 and "closed" in closed.json()["detail"]
    app.dependency_overrides[deps.app_settings] = lambda: replace(settings, admin_token=TOKEN)
    for headers in ({}, bearer("wrong"), bearer(world["key"])):  # a tenant key is no token
        r = client.get("/api/admin/tenants/a-3pl", headers=headers)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    assert client.get("/api/admin/tenants", headers=bearer(TOKEN)).status_code == 200


def test_admin_api_refuses_a_bad_value_with_422_and_writes_nothing(admin, factory, world):
    r = admin.patch(
        "/api/admin/tenants/a-3pl/settings",
        json={"weight": 2, "audit_rate": 7},
        headers=bearer(TOKEN),
    )

    assert r.status_code == 422
    assert r.json() == {"detail": "tenant setting 'audit_rate' must be a number in [0, 1], got 7"}
    assert stored(factory)[0] == {} and audit_rows(factory, world["id"]) == []


def test_admin_api_sets_shows_lists_and_disables_with_audit_rows(admin, factory, settings, world):
    path = "/api/admin/tenants/a-3pl"
    r = admin.patch(f"{path}/settings", json={"max_in_flight": 2}, headers=bearer(TOKEN))
    assert r.status_code == 200, r.text
    assert r.json() == {"tenant": "a-3pl", "changed": {"max_in_flight": {"from": None, "to": 2}}}
    assert claimed(factory, settings)[world["id"]] == 2

    shown = {s["key"]: s for s in admin.get(path, headers=bearer(TOKEN)).json()["settings"]}
    assert shown["max_in_flight"] == {"key": "max_in_flight", "value": 2, "default": False}
    assert shown["weight"]["default"] is True
    assert admin.post(f"{path}/disable", headers=bearer(TOKEN)).json()["changed"] is True
    listed = admin.get("/api/admin/tenants", headers=bearer(TOKEN)).json()["tenants"]
    assert [(t["name"], t["disabled_at"] is not None) for t in listed] == [
        ("a-3pl", True),
        ("b-3pl", False),
    ]
    assert admin.post(f"{path}/enable", headers=bearer(TOKEN)).json()["disabled_at"] is None
    assert admin.get("/api/admin/tenants/nobody", headers=bearer(TOKEN)).status_code == 404

    rows = audit_rows(factory, world["id"])
    who = audit.admin_actor(TOKEN)
    assert [(r.actor, r.action) for r in rows] == [
        (who, audit.SETTINGS_CHANGED),
        (who, audit.TENANT_DISABLED),
        (who, audit.TENANT_ENABLED),
    ]
    assert TOKEN not in who


def test_admin_routes_are_not_walked_as_tenant_routes_but_every_other_is():
    """The ADMIN prefix takes out only the admin API: every other {tenant} route is still
    walked by the isolation tests."""
    paths = app.openapi()["paths"]
    admin_paths = {p for p in paths if p.startswith(tuple(ADMIN))}
    walked = {path for _, path in tenant_routes()}
    assert len(admin_paths) == 6  # list, show, settings, disable, enable, erase an order
    tenant_paths = {p for p in paths if "{tenant}" in p} - admin_paths
    assert walked == {p.replace("{tenant}", "{t}") for p in tenant_paths}
