"""The HTTP API through FastAPI's TestClient, on real PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from enrichment.api import app, deps
from enrichment.core import tenants
from enrichment.core.models import ExceptionRecord, utcnow
from enrichment.core.settings import MonitorConfig
from enrichment.metrics.monitor import run_monitor
from tests.factories import make_record
from tests.routes import ANY_PARAMS, tenant_routes

ROUTES = tenant_routes()


@pytest.fixture
def keys(factory):
    """Tenant a-3pl: 3 due records, 1 enriched; tenant b-3pl: 2 due records."""
    with factory.begin() as s:
        a, key_a = tenants.create_tenant(s, "a-3pl")
        b, key_b = tenants.create_tenant(s, "b-3pl")
        for _ in range(3):
            make_record(s, a)
        make_record(s, a, ai_label="OTHER", ai_confidence=0.9, enriched_at=utcnow())
        for _ in range(2):
            make_record(s, b)
    return {"a-3pl": key_a, "b-3pl": key_b}


def auth(key):
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(("method", "route"), ROUTES)
def test_every_route_refuses_another_tenants_key(client, keys, enqueued, method, route):
    r = client.request(method, route.format(t="a-3pl", **ANY_PARAMS), headers=auth(keys["b-3pl"]))
    assert r.status_code == 404
    assert enqueued == []


@pytest.mark.parametrize(("method", "route"), ROUTES)
def test_every_route_same_answer_for_unknown_tenant(client, keys, method, route):
    r = client.request(method, route.format(t="zz-none", **ANY_PARAMS), headers=auth(keys["a-3pl"]))
    assert r.status_code == 404


@pytest.mark.parametrize(("method", "route"), ROUTES)
def test_every_route_needs_a_valid_key(client, keys, method, route):
    path = route.format(t="a-3pl", **ANY_PARAMS)
    assert client.request(method, path).status_code == 401
    r = client.request(method, path, headers=auth("enr_wrong"))
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "route"), ROUTES)
def test_every_route_rejects_a_bad_tenant_name(client, keys, method, route):
    r = client.request(
        method, route.format(t="Bad_Name", **ANY_PARAMS), headers=auth(keys["a-3pl"])
    )
    assert r.status_code == 422
    assert "pattern" in r.text


def test_health_numbers_for_the_keys_tenant(client, keys):
    r = client.get("/api/enrichment/health/a-3pl", headers=auth(keys["a-3pl"]))
    assert r.status_code == 200
    body = r.json()
    assert body["tenant"] == "a-3pl" and body["status"] == "healthy"
    assert body["completeness_pct"] == 25.0 and body["backlog_records"] == 3
    assert body["integrity"]["retry_count_above_max"]["ok"] is True


def test_report_includes_metrics_and_the_snapshot_trend(client, keys, factory, settings):
    for i in range(3):
        run_monitor(factory, settings, now=utcnow() - timedelta(minutes=10 - i))
    r = client.get("/api/enrichment/report/a-3pl?hours=1", headers=auth(keys["a-3pl"]))
    assert r.status_code == 200
    body = r.json()
    assert body["metrics"]["total_records"] == 4 and len(body["trend"]) == 3
    assert body["metrics"]["confidence_buckets"]["0.9-1.0"] == 1
    bad = client.get("/api/enrichment/report/a-3pl?hours=0", headers=auth(keys["a-3pl"]))
    assert bad.status_code == 422


def test_html_report_renders_plots_inline(client, keys, factory, settings):
    for i in range(2):
        run_monitor(factory, settings, now=utcnow() - timedelta(minutes=5 - i))
    r = client.get("/api/enrichment/report/a-3pl.html", headers=auth(keys["a-3pl"]))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "<h1>Enrichment report: a-3pl</h1>" in html
    assert html.count('class="bar"') == 10  # the ten confidence buckets
    assert html.count('class="line"') == 2  # completeness and backlog over time
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org", "")


def test_backlog_lists_only_this_tenant_in_due_order(client, keys):
    r = client.get("/api/enrichment/backlog/a-3pl?limit=2", headers=auth(keys["a-3pl"]))
    assert r.status_code == 200
    body = r.json()
    assert body["backlog_records"] == 3 and body["due_now"] == 3
    assert len(body["next_up"]) == 2
    dues = [item["next_attempt_at"] for item in body["next_up"]]
    assert dues == sorted(dues)
    for bad in ("-1", "abc", "100000"):
        r = client.get(f"/api/enrichment/backlog/a-3pl?limit={bad}", headers=auth(keys["a-3pl"]))
        assert r.status_code == 422


def _escalate(s, tenant_name, *, hours_ago, reason, notes=None):
    tenant = tenants.by_name(s, tenant_name)
    rec = make_record(s, tenant, escalated_at=utcnow() - timedelta(hours=hours_ago), notes=notes)
    rec.escalation_reason = reason
    return rec


def test_backlog_lists_the_escalated_records_oldest_first_with_reasons(client, keys, factory):
    with factory.begin() as s:
        _escalate(s, "a-3pl", hours_ago=1, reason="PermanentError: bad payload")
        oldest = _escalate(s, "a-3pl", hours_ago=5, reason="TransientError: timeout attempt=5")
        _escalate(s, "a-3pl", hours_ago=3, reason="TransientError: 529 overloaded")
        _escalate(s, "b-3pl", hours_ago=9, reason="b-3pl's own")
    r = client.get("/api/enrichment/backlog/a-3pl?limit=2", headers=auth(keys["a-3pl"]))
    body = r.json()
    assert body["escalated_records"] == 3 and body["backlog_records"] == 3  # unchanged fields
    assert [e["escalation_reason"] for e in body["escalated"]] == [
        "TransientError: timeout attempt=5",
        "TransientError: 529 overloaded",
    ]
    first = body["escalated"][0]
    assert first["external_id"] == oldest.external_id and first["escalated_at"]
    assert {"last_error", "retry_count", "reason_code"} <= first.keys()


def test_html_report_without_snapshots_shows_the_live_figures(client, keys):
    html = client.get("/api/enrichment/report/a-3pl.html", headers=auth(keys["a-3pl"])).text
    assert "not enough snapshots" not in html
    assert html.count('class="level"') == 2  # completeness and backlog, live
    assert "now 25 %" in html and "now 3 records" in html


def test_html_report_escapes_database_and_customer_text(client, keys, factory):
    attack = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    with factory.begin() as s:
        _escalate(s, "a-3pl", hours_ago=1, reason=attack, notes=f"note {attack}")
    html = client.get("/api/enrichment/report/a-3pl.html", headers=auth(keys["a-3pl"])).text
    assert "<script" not in html and "<img" not in html and 'onerror="' not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "note &lt;script&gt;" in html


def test_html_report_says_what_crossed_in_plain_words(client, keys, factory):
    with factory.begin() as s:
        _escalate(s, "a-3pl", hours_ago=1, reason="TransientError: timeout")
    html = client.get("/api/enrichment/report/a-3pl.html", headers=auth(keys["a-3pl"])).text
    assert ">WARNING<" in html and "More than 0 records escalated to a person" in html
    assert "escalated_warning" not in html and "stuck_null_over_1d" not in html


def test_docs_serve_swagger_ui_from_this_server(client):
    html = client.get("/docs").text
    assert "SwaggerUIBundle" in html
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    for asset in ("/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css"):
        assert asset in html and client.get(asset).status_code == 200


def test_process_claims_this_tenants_due_records_only(client, keys, enqueued, factory):
    r = client.post("/api/enrichment/process/a-3pl", headers=auth(keys["a-3pl"]))
    assert r.status_code == 200
    assert r.json() == {"tenant": "a-3pl", "claimed": 3, "enqueued": 3}
    with factory() as s:
        leased = s.query(ExceptionRecord).filter(ExceptionRecord.lease_token.is_not(None)).all()
        assert sorted(r.id for r in leased) == sorted(e[0] for e in enqueued)
        assert {r.tenant_id for r in leased} == {1}  # a-3pl only; b-3pl untouched
    again = client.post("/api/enrichment/process/a-3pl", headers=auth(keys["a-3pl"]))
    assert again.json()["claimed"] == 0  # already leased


def test_process_uses_the_workers_enqueue_chain_by_default(client, keys, monkeypatch):
    import workers.tasks

    calls = []
    monkeypatch.setattr(workers.tasks, "enqueue_chain", lambda *a: calls.append(a))
    del app.dependency_overrides[deps.enqueuer]
    r = client.post("/api/enrichment/process/b-3pl", headers=auth(keys["b-3pl"]))
    assert r.json()["claimed"] == 2 and len(calls) == 2


def test_process_says_503_when_the_broker_is_down(client, keys):
    def broken(*_args):
        raise ConnectionError("redis down")

    app.dependency_overrides[deps.enqueuer] = lambda: broken
    r = client.post("/api/enrichment/process/a-3pl", headers=auth(keys["a-3pl"]))
    assert r.status_code == 503 and "claimed 3, enqueued 0" in r.json()["detail"]


def test_metrics_exposes_the_latest_snapshot_per_tenant(client, keys, factory, settings):
    run_monitor(factory, settings, now=utcnow() - timedelta(minutes=5))
    run_monitor(factory, settings, config=MonitorConfig())
    app.dependency_overrides[deps.app_settings] = lambda: replace(settings, metrics_open=True)
    text = client.get("/metrics").text
    assert 'enrichment_completeness_ratio{tenant="a-3pl"} 0.25' in text
    assert 'enrichment_backlog_records{tenant="b-3pl"} 2.0' in text
    assert 'enrichment_attempts_total{tenant="a-3pl"} 0.0' in text
    assert 'enrichment_confidence_bucket{le="+Inf",tenant="a-3pl"} 1.0' in text
    assert text.count('enrichment_records{tenant="a-3pl"}') == 1  # latest snapshot only


def test_metrics_are_closed_unless_a_token_is_set_or_they_are_opened(client, keys, settings):
    closed = client.get("/metrics")
    assert closed.status_code == 403 and "ENRICHMENT_METRICS_TOKEN" in closed.json()["detail"]
    assert client.get("/metrics", headers=auth(keys["a-3pl"])).status_code == 403
    app.dependency_overrides[deps.app_settings] = lambda: replace(settings, metrics_open=True)
    assert client.get("/metrics").status_code == 200


def test_the_start_up_line_says_whether_metrics_are_closed(settings):
    from structlog.testing import capture_logs

    from enrichment.api.monitoring import announce_metrics

    with capture_logs() as logs:
        announce_metrics(settings)
        announce_metrics(replace(settings, metrics_open=True))
        announce_metrics(replace(settings, metrics_token="scrape-me"))
    assert [e["event"] for e in logs] == ["metrics.closed", "metrics.open", "metrics.token"]
    assert "ENRICHMENT_METRICS_OPEN=1" in logs[0]["detail"]


def test_metrics_token_when_configured(client, keys, settings):
    app.dependency_overrides[deps.app_settings] = lambda: replace(
        settings, metrics_token="scrape-me"
    )
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=auth(keys["a-3pl"])).status_code == 401
    assert client.get("/metrics", headers=auth("scrape-me")).status_code == 200
    # A token that is not ASCII is a wrong one (401), not a 500 from compare_digest.
    odd = {"Authorization": "Bearer café".encode()}
    assert client.get("/metrics", headers=odd).status_code == 401


def test_openapi_documents_the_response_shapes(client):
    spec = client.get("/openapi.json").json()
    ok = spec["paths"]["/api/enrichment/health/{tenant}"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"]["$ref"].endswith("/Health")
    assert "completeness_pct" in spec["components"]["schemas"]["Health"]["properties"]


def test_grafana_dashboard_uses_only_exported_metric_names(client, keys, factory, settings):
    import json
    import re
    from pathlib import Path

    run_monitor(factory, settings)
    app.dependency_overrides[deps.app_settings] = lambda: replace(settings, metrics_open=True)
    text = client.get("/metrics").text
    dash = json.loads(Path("docs/grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    names = {n for e in exprs for n in re.findall(r"enrichment_[a-z_]+", e)}
    assert len(names) >= 10
    # Families are always declared (# TYPE), even when a gauge has no data yet.
    declared = set(re.findall(r"^# TYPE (\S+)", text, flags=re.M))
    bases = {re.sub(r"_bucket$", "", n) for n in names}
    assert bases <= declared, bases - declared


def test_the_route_walk_finds_every_tenant_route():
    # Guard against a walk that silently finds nothing: these routes exist today.
    assert ("POST", "/api/enrichment/process/{t}") in ROUTES
    assert ("GET", "/api/enrichment/report/{t}.html") in ROUTES
    assert len(ROUTES) >= 5
