"""The API keeps the promises of its own OpenAPI schema, fuzzed by schemathesis.

Given tenants demo-3pl (whose key every generated case sends) and b-3pl, each with records,
actions and events, when schemathesis generates cases for every operation the app's schema
lists (its examples, coverage and fuzzing phases, valid and invalid data), then each answer
passes schemathesis' default checks:
- no 5xx (not_a_server_error);
- every status, content type, header and body documented (status_code_conformance,
  content_type_conformance, response_schema_conformance, response_headers_conformance: so
  every 401 carries `WWW-Authenticate: Bearer`);
- auth enforced wherever declared: each 2xx is sent again without a key and with a wrong one
  and must get 401 (ignored_auth), and a case without the header gets 401 (missing_required_header);
- invalid data rejected, valid data not (negative_data_rejection, positive_data_acceptance);
- 405 with an Allow header for undeclared methods (unsupported_method).

The schema is read from the app, so a route added later is fuzzed without anyone listing it.
It is loaded at import (the app's own schema dict; nothing connects): the fixture-based
loader, schemathesis.pytest.from_fixture, fails on pytest 9.2, which dropped Node._nodeid.

Bounded and repeatable: at most 40 fuzzed cases per operation plus the coverage phase's
deterministic ones, derandomized, no example database; the whole run takes seconds.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from enrichment.api import app, deps
from enrichment.core import reviewers, tenants
from enrichment.core.models import Order, OutboxEvent, ResolutionAction, utcnow
from enrichment.core.outbox import ENRICHED
from tests.factories import make_record

# A is named as the schema's example tenant, so the examples phase reaches its data too.
KEYS = {"demo-3pl": "enr_contract-key-a", "b-3pl": "enr_contract-key-b"}
# The operator's ENRICHMENT_ADMIN_TOKEN, sent to the admin routes instead of A's key.
ADMIN_TOKEN = "contract-admin-token"
# Known-good path values, mixed into generated ones so cases reach real rows: A's own (2xx),
# B's (404 through A's key). Integer ids are only known once the fixture has seeded them.
KNOWN: dict[str, list[Any]] = {
    "tenant": list(KEYS),
    "external_id": ["d-exc-1", "d-exc-2", "d-exc-3", "b-exc-1"],
    "action_id": [],
    "record_id": [],
    "name": ["ana", "bo"],  # each tenant's reviewers (seeded): A revokes its own once
}
VALID = {
    "tenant": lambda v: isinstance(v, str) and bool(tenants.TENANT_NAME.match(v)),
    "external_id": lambda v: isinstance(v, str) and 0 < len(v) <= 128,
    "action_id": lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
    # A queue item's integer id or `ext:` and an external id (the review routes take both).
    "record_id": lambda v: isinstance(v, str) and bool(re.fullmatch(r"[1-9]\d{0,9}|ext:.+", v)),
    "name": lambda v: isinstance(v, str) and 0 < len(v) <= 64,
}
BOUNDED = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    # The seeded world is shared by one operation's cases on purpose: they only read it, or
    # claim and ingest, which later cases may see; every answer must conform either way.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

# A tenant's settings are judged by TenantSettings.validate (bounds, unknown keys, the Slack
# webhook's addresses): the schema says only "an object", so a drawn one may be a 422.
JUDGED_BY_THE_DOMAIN = {
    "include-path": "/api/admin/tenants/{tenant}/settings",
    "checks": {
        "positive_data_acceptance": {"expected-statuses": ["2xx", "401", "403", "404", "422"]}
    },
}
# The schema as the app serves it at /openapi.json, read without starting the app: its
# start-up check would refuse a database the session has not migrated yet (collection runs
# before the fixtures). Each case still calls the app over ASGI, started and checked.
# An order's new events are judged as its events are (source names, detail limits: lines.py).
EVENTS_JUDGED = {
    "include-path": "/api/enrichment/orders/{tenant}/{external_id}/events",
    "checks": {
        "positive_data_acceptance": {"expected-statuses": ["2xx", "401", "403", "404", "422"]}
    },
}
schema = schemathesis.openapi.from_dict(
    json.loads(json.dumps(app.openapi())),
    config=schemathesis.Config.from_dict({"operations": [JUDGED_BY_THE_DOMAIN, EVENTS_JUDGED]}),
)
schema.app, schema.location = app, "/openapi.json"


@schema.hook
def flatmap_path_parameters(_ctx, params: dict[str, Any]):
    """Mostly swap each valid path value for a known one (the drawn one stays a choice). A
    value the case made invalid on purpose stays, or the case would not test what it says."""
    if not isinstance(params, dict):
        return st.just(params)
    choices = {
        name: st.sampled_from([*KNOWN[name], value])
        for name, value in params.items()
        if KNOWN.get(name) and VALID[name](value)
    }
    return st.fixed_dictionaries(choices).map(lambda chosen: {**params, **chosen})


@schema.auth(refresh_interval=None)
class TenantAKey:
    """A's key on every case (the admin token on the admin routes), except those whose point
    is a missing Authorization header."""

    def get(self, case, _ctx) -> str:
        return ADMIN_TOKEN if case.path.startswith("/api/admin/") else KEYS["demo-3pl"]

    def set(self, case, key: str, _ctx) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {key}"}


@pytest.fixture
def world(factory, settings, enqueued):
    """Both tenants with fixed keys, three records each with a delivered action and an event;
    the API on the test database, enqueuing captured."""
    with factory.begin() as s:
        for name, key in KEYS.items():
            tenant, _ = tenants.create_tenant(s, name)
            tenant.api_key_hash = tenants.hash_key(key)
            for i in (1, 2, 3):
                KNOWN["action_id"].append(_seed_record(s, tenant, f"{name[0]}-exc-{i}"))
                # In the review queue: a review or a requeue takes it out (then 409 or 404).
                queued = make_record(s, tenant, escalated_at=utcnow(), escalation_reason="seed")
                KNOWN["record_id"] += [str(queued.id), f"ext:{queued.external_id}"]
            for person in KNOWN["name"]:
                reviewers.add(s, tenant.id, person)
    # /metrics opened, so its generated cases reach a 2xx (closed, it is a 403 for all).
    opened = replace(settings, metrics_open=True, admin_token=ADMIN_TOKEN)
    app.dependency_overrides[deps.app_settings] = lambda: opened
    app.dependency_overrides[deps.enqueuer] = lambda: lambda *args: enqueued.append(args)
    yield
    app.dependency_overrides.clear()
    KNOWN["action_id"].clear()
    KNOWN["record_id"].clear()


@pytest.fixture
def answers(world, request):
    """The status of every generated case. A run that passed must have reached a 2xx: else
    the positive path went untested and the pass means little."""
    seen: list[int] = []
    failed_before = request.session.testsfailed
    yield seen
    if request.session.testsfailed == failed_before:
        assert any(200 <= code < 300 for code in seen), (
            f"no generated case reached a 2xx (got {sorted(set(seen))}): seed what the "
            "operation needs, or add its path parameter to KNOWN"
        )


def _seed_record(s, tenant, external_id: str) -> int:
    """A record with one delivered action and one pending event; returns the action's id."""
    rec = make_record(s, tenant)
    rec.external_id = external_id
    s.get(Order, rec.order_id).external_id = external_id  # the order routes reach it too
    action = ResolutionAction(
        tenant_id=tenant.id, record_id=rec.id, action="notify_customer", status="DELIVERED"
    )
    s.add(action)
    s.add(OutboxEvent(tenant_id=tenant.id, record_id=rec.id, type=ENRICHED, data={}))
    s.flush()
    return action.id


@schema.parametrize()
@BOUNDED
def test_every_operation_keeps_its_schemas_promises(case, answers):
    answers.append(case.call_and_validate().status_code)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("token", [None, "scrape-me"])
def test_metrics_auth_is_what_the_schema_declares(world, settings, token):
    """/metrics declares "bearer or nothing": open without ENRICHMENT_METRICS_TOKEN when the
    operator opened it, 401 without that token when it is set; every answer conforms to the
    schema either way."""
    opened = replace(settings, metrics_token=token, metrics_open=token is None)
    app.dependency_overrides[deps.app_settings] = lambda: opened
    metrics = schema["/metrics"]["GET"]
    assert metrics.definition.raw["security"] == [{"HTTPBearer": []}, {}]

    bare = metrics.Case().call_and_validate()
    tenant_key = metrics.Case(headers=bearer(KEYS["demo-3pl"])).call_and_validate()
    scraper = metrics.Case(headers=bearer(token or "anything")).call_and_validate()

    expected = 200 if token is None else 401
    assert (bare.status_code, tenant_key.status_code, scraper.status_code) == (
        expected,
        expected,
        200,
    )


def test_the_process_routes_503_is_the_documented_one(world):
    """With the broker down, the process route's answer is the 503 its schema documents (a
    5xx on purpose here, so not_a_server_error is the one check left out)."""

    def broker_down(*_args):
        raise ConnectionError("redis down")

    app.dependency_overrides[deps.enqueuer] = lambda: broker_down
    process = schema["/api/enrichment/process/{tenant}"]["POST"]
    case = process.Case(path_parameters={"tenant": "demo-3pl"}, headers=bearer(KEYS["demo-3pl"]))
    response = case.call_and_validate(excluded_checks=[not_a_server_error])
    assert response.status_code == 503
