"""The API's database connections: a request holds one at a time, and a pool that stays busy
answers 503 with Retry-After (issue 22, finding 2: the auth lookup held its connection for the
whole request while the records route took a second one, and a burst ended in 500s after 30 s).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from fastapi.testclient import TestClient

from enrichment.api import app, deps
from enrichment.core import db, tenants

ITEM = {
    "order": {"external_id": "ORD-1", "payload": {"name": "#1"}, "events": []},
    "exception": {
        "external_id": "EXC-1",
        "reason_code": "CARRIER_DELAY",
        "severity": "medium",
        "notes": "customer asked where the parcel is",
    },
}


@pytest.fixture
def one_connection(settings, factory):
    """The API on a pool of exactly one connection, with a short wait for it."""
    narrow = replace(settings, db_pool_size=1, db_max_overflow=0, api_pool_timeout_s=0.5)
    with factory.begin() as s:
        _, key = tenants.create_tenant(s, "a-3pl")
    app.dependency_overrides[deps.app_settings] = lambda: narrow
    app.dependency_overrides[deps.enqueuer] = lambda: lambda *args: None
    engine = db.api_session_factory(narrow)().get_bind()
    yield TestClient(app), {"Authorization": f"Bearer {key}"}, engine
    app.dependency_overrides.clear()
    engine.dispose()


def test_a_write_after_the_key_check_needs_one_connection_not_two(one_connection):
    client, auth, _ = one_connection
    r = client.post("/api/enrichment/records/a-3pl", json={"items": [ITEM]}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["created"] == 1
    # and a read route after it, on the same single connection
    assert client.get("/api/enrichment/health/a-3pl", headers=auth).status_code == 200


def test_a_pool_that_stays_busy_answers_503_with_retry_after(one_connection):
    client, auth, engine = one_connection
    with engine.connect():  # the only connection, held elsewhere
        r = client.get("/api/enrichment/health/a-3pl", headers=auth)
        assert r.status_code == 503
        assert r.headers["Retry-After"] == "1"
        assert r.json()["detail"].startswith("the database has no free connection")
        assert "QueuePool" not in r.text  # no library text in the answer
    assert client.get("/api/enrichment/health/a-3pl", headers=auth).status_code == 200
