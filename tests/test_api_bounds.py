"""What every request goes through (enrichment/api/guards.py), on real PostgreSQL: the body
limit before authentication and parsing, non-finite numbers refused, a request id on every
answer and in the log, the security headers everywhere; and external ids holding "/"."""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import func, select
from structlog.testing import capture_logs

from enrichment.api import app, deps, guards
from enrichment.core import tenants
from enrichment.core.models import Order
from enrichment.ingestion import items as records_in
from tests.browser import served
from tests.factories import make_record

SMALL = guards.SMALL_BODY_BYTES
# The routes that parse a body of a few fields, and the review page's sign-in form.
SMALL_ROUTES = [
    "/api/enrichment/actions/a-3pl/1",
    "/api/enrichment/reviews/a-3pl/1",
    "/review/a-3pl/login",
]
CHUNK = 64 * 1024
STREAMED_CHUNKS = 1600  # 100 MB, if the server read it all


@pytest.fixture
def keys(factory):
    with factory.begin() as s:
        a, key_a = tenants.create_tenant(s, "a-3pl")
        record = make_record(s, a)
    return {"a-3pl": key_a, "record_id": record.id}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


def streamed(sent: list[int]):
    for _ in range(STREAMED_CHUNKS):
        sent.append(CHUNK)
        yield b" " * CHUNK


@pytest.mark.parametrize("route", SMALL_ROUTES)
def test_an_unauthenticated_declared_oversized_body_is_413_before_the_key(client, route):
    r = client.post(route, content=b" " * (SMALL + 1))
    assert r.status_code == 413, r.text
    assert r.json()["detail"] == f"body is {SMALL + 1} bytes; the limit is {SMALL}"
    assert r.headers["connection"] == "close"


@pytest.mark.parametrize("route", SMALL_ROUTES[:2])
def test_a_chunked_body_is_refused_before_the_server_reads_it_whole(settings, factory, route):
    # Given the real app under uvicorn, when a body streams in with no declared length and
    # no key, then the answer is 413 long before the 100 MB are sent.
    sent: list[int] = []
    with served(settings) as url, httpx.Client(timeout=30) as http:
        r = http.post(url + route, content=streamed(sent))
    assert r.status_code == 413 and r.json()["detail"] == f"body is over the {SMALL} byte limit"
    assert sum(sent) < STREAMED_CHUNKS * CHUNK / 4, f"{sum(sent)} bytes sent before the answer"


def test_a_declared_length_is_refused_without_reading_a_byte(settings, factory):
    sent: list[int] = []
    declared = {"Content-Length": str(STREAMED_CHUNKS * CHUNK)}
    with served(settings) as url, httpx.Client(timeout=30) as http:
        r = http.post(url + SMALL_ROUTES[0], content=streamed(sent), headers=declared)
    assert r.status_code == 413
    assert sum(sent) < STREAMED_CHUNKS * CHUNK / 4


def test_the_records_route_keeps_its_own_larger_limit(client, keys):
    # Given a records body over the small limit but under the records one: it is parsed.
    body = json.dumps({"items": [{"junk": "x" * (SMALL * 2)}]}).encode()
    r = client.post("/api/enrichment/records/a-3pl", content=body, headers=auth(keys["a-3pl"]))
    assert r.status_code == 200 and r.json()["rejected"] == 1
    over = records_in.MAX_BODY_BYTES + 1
    r = client.post("/api/enrichment/records/a-3pl", content=b" " * over)
    assert r.status_code == 413 and str(records_in.MAX_BODY_BYTES) in r.json()["detail"]


@pytest.mark.parametrize("number", ["1e999", "-1e999", "NaN", "Infinity", "-Infinity"])
def test_a_non_finite_number_is_a_422_with_one_line(client, keys, number):
    key, record_id = keys["a-3pl"], keys["record_id"]
    action = client.post(
        "/api/enrichment/actions/a-3pl/1",
        content=f'{{"outcome": "done", "note": {number}}}',
        headers=auth(key),
    )
    review = client.post(
        f"/api/enrichment/reviews/a-3pl/{record_id}",
        content=f'{{"label": "OTHER", "reviewer": "Ada", "note": [{{"x": {number}}}]}}',
        headers=auth(key),
    )
    for r in (action, review):
        assert r.status_code == 422, r.text
        assert "JSON cannot carry" in r.json()["detail"] and "\n" not in r.json()["detail"]


def test_a_non_finite_number_in_records_is_a_422_and_no_database_text(client, keys, factory):
    item = {
        "order": {"external_id": "ORD-1", "payload": {"weight": "__X__"}, "events": []},
        "exception": {"external_id": "EXC-1", "reason_code": "CARRIER_DELAY"},
    }
    body = json.dumps({"items": [item]}).replace('"__X__"', "1e999")
    r = client.post("/api/enrichment/records/a-3pl", content=body, headers=auth(keys["a-3pl"]))
    assert r.status_code == 422 and "JSON cannot carry" in r.json()["detail"]
    assert "invalid input syntax" not in r.text
    with factory() as s:
        assert s.scalar(select(func.count()).where(Order.external_id == "ORD-1")) == 0


def test_an_unexpected_error_is_a_500_naming_the_request_id_and_only_the_log_has_it(client, keys):
    # Given a bug deep in a request (a database down is a 503 instead: test_startup.py).
    def broken():
        raise RuntimeError("the secret internals of a bug")

    app.dependency_overrides[deps.session_factory] = broken
    with capture_logs() as logs:
        r = client.get("/api/enrichment/health/a-3pl", headers=auth(keys["a-3pl"]))
    request_id = r.headers["x-request-id"]
    assert r.status_code == 500
    assert r.json() == {"detail": f"internal error: the server log has it as {request_id}"}
    assert "secret internals" not in r.text
    logged = [e for e in logs if e["event"] == "api.error"]
    assert logged and logged[0]["request_id"] == request_id
    assert logged[0]["log_level"] == "error" and logged[0]["path"] == "/api/enrichment/health/a-3pl"


def test_every_answer_carries_the_security_headers_and_its_own_request_id(client, keys):
    key = keys["a-3pl"]
    answers = [
        client.get("/api/enrichment/health/a-3pl", headers=auth(key)),
        client.get("/api/enrichment/health/a-3pl"),  # 401
        client.get("/api/enrichment/report/a-3pl.html", headers=auth(key)),
        client.get("/review/a-3pl/login"),
        client.get("/metrics"),  # 403: closed
        client.get("/nowhere"),  # 404
        client.post(SMALL_ROUTES[0], content=b" " * (SMALL + 1)),  # 413
    ]
    assert [a.status_code for a in answers] == [200, 401, 200, 200, 403, 404, 413]
    for a in answers:
        csp = a.headers["content-security-policy"]
        # The review page runs its one nonce'd script; nothing else runs any.
        review = a.request.url.path.startswith("/review/")
        assert ("script-src 'nonce-" if review else "script-src 'none'") in csp
        assert "frame-ancestors 'none'" in csp
        assert a.headers["x-frame-options"] == "DENY"
        assert a.headers["x-content-type-options"] == "nosniff"
        assert a.headers["referrer-policy"] == "same-origin"
        assert a.headers["cache-control"] == "no-store"
    assert len({a.headers["x-request-id"] for a in answers}) == len(answers)


@pytest.mark.parametrize("path", ["/api/enrichment/report/a-3pl.html", "/review/a-3pl/login"])
def test_an_html_page_styles_with_the_nonce_its_csp_names(client, keys, path):
    first = client.get(path, headers=auth(keys["a-3pl"]))
    second = client.get(path, headers=auth(keys["a-3pl"]))
    nonces = []
    for page in (first, second):
        nonce = page.headers["content-security-policy"].split("'nonce-")[1].split("'")[0]
        assert f'<style nonce="{nonce}">' in page.text
        nonces.append(nonce)
    assert nonces[0] != nonces[1]  # per response


def test_the_docs_keep_a_policy_swagger_can_run_under(client):
    r = client.get("/docs")
    assert r.status_code == 200
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY" and "cache-control" not in r.headers


@pytest.mark.parametrize("external_id", ["acme/2024/EXC-1", "EXC-2/", "/EXC-3", "a b?c#d%e"])
def test_an_external_id_with_a_slash_is_fetched_by_the_api(client, keys, external_id):
    item = {
        "order": {"external_id": "ORD-9", "payload": {}, "events": []},
        "exception": {
            "external_id": external_id,
            "reason_code": "CARRIER_DELAY",
            "severity": "low",
        },
    }
    r = client.post(
        "/api/enrichment/records/a-3pl",
        content=json.dumps({"items": [item]}),
        headers=auth(keys["a-3pl"]),
    )
    assert r.json()["items"][0]["result"] == "created", r.text
    for sent in {quote(external_id, safe="/"), quote(external_id, safe="")}:
        story = client.get(f"/api/enrichment/records/a-3pl/{sent}", headers=auth(keys["a-3pl"]))
        assert story.status_code == 200, (sent, story.text)
        assert story.json()["record"]["external_id"] == external_id


def test_an_external_id_with_a_slash_is_shown_by_the_cli(
    keys, factory, pg_url, monkeypatch, capsys
):
    from enrichment.cli import main
    from enrichment.core.settings import get_settings

    with factory.begin() as s:
        tenant = tenants.by_name(s, "a-3pl")
        make_record(s, tenant).external_id = "acme/2024/EXC-7"
    monkeypatch.setenv("DATABASE_URL", pg_url)
    get_settings.cache_clear()
    try:
        assert main(["show", "a-3pl", "acme/2024/EXC-7"]) == 0
    finally:
        get_settings.cache_clear()
    assert "acme/2024/EXC-7" in capsys.readouterr().out
