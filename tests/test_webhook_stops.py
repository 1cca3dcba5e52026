"""Webhooks never stop silently (issue 23): refused events are counted and alert, a secret
rotation overlaps, a URL change keeps the secret, `webhook test` answers, every POST is logged.

Against real receivers on 127.0.0.1 (enrichment.tooling.receiver, verifying with
standardwebhooks' own verifier) and the real test PostgreSQL.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from standardwebhooks.webhooks import Webhook

from enrichment.alerting.dispatch import run_alerts
from enrichment.cli import report as report_cli
from enrichment.core import audit, delivery_log, tenants
from enrichment.core.models import OutboxEvent, Tenant, utcnow
from enrichment.core.monitor_models import Alert
from enrichment.core.settings import get_settings
from enrichment.delivery import webhooks
from enrichment.delivery.deliver import deliver_due
from enrichment.metrics import prom
from enrichment.metrics.monitor import run_monitor
from enrichment.reporting import report_html, reports
from tests import test_delivery
from tests.test_delivery import CONFIG, connect, enrich, events_of

receivers = test_delivery.receivers  # the fixture, found by name
OVERLAP = replace(CONFIG, secret_overlap_s=3600.0)


def statuses(factory, tenant="acme") -> list[str]:
    return [e.status for e in events_of(factory, tenant)]


def tenant_row(factory, name="acme") -> Tenant:
    with factory() as s:
        return tenants.require(s, name)


@pytest.fixture
def loopback_cli(cli, monkeypatch):
    """The `cli` fixture, allowed to send to the loopback receivers."""
    monkeypatch.setenv("ENRICHMENT_WEBHOOK_ALLOW_PRIVATE", "1")
    monkeypatch.setenv("ENRICHMENT_WEBHOOK_TIMEOUT_S", "2")
    get_settings.cache_clear()
    return cli


def test_a_webhook_that_answers_401_stops_its_events_counts_them_everywhere_and_alerts(
    factory, settings, receivers
):
    # Given a receiver that verifies with a secret that is not the tenant's (the issue's
    # story: the secret changed under it), when two decisions are delivered
    r = receivers()
    connect(factory, "acme", r)
    r.secret = webhooks.new_secret()
    enrich(factory, settings, "acme", 2)
    deliver_due(factory, CONFIG)

    # then every event is stopped, not retried and not silently pending
    n = len(statuses(factory))
    assert n >= 2 and r.bad_signatures == n and set(statuses(factory)) == {"stopped"}
    [snap] = run_monitor(factory, settings)
    assert (snap.stopped_events, snap.dead_events, snap.undelivered_events) == (n, 0, 0)

    # counted by report, status (health), /metrics and the report page
    with factory() as s:
        rep = reports.report(s, tenants.require(s, "acme"), settings, now=utcnow())
    assert rep.health.stopped_events == n and rep.health.status == "critical"
    assert "stopped_events_critical" in rep.health.problems
    assert f"0 (stopped {n}, dead 0)" in _printed(report_cli.print_report, rep)
    assert f"stopped {n}, dead 0" in _printed(report_cli.print_health, rep.health)
    assert f"{n} stopped, 0 dead" in report_html.render(rep)
    text = prom.exposition(factory).decode()
    assert re.search(rf'enrichment_stopped_events\{{tenant="acme"\}} {n}\.0', text)

    # and the critical alert fires at the first evaluation
    run_alerts(factory, [snap], settings)
    with factory() as s:
        states = {(a.metric, a.severity): a.state for a in s.scalars(select(Alert))}
    assert states[("stopped_events", "critical")] == "firing"


def _printed(printer, value) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        printer(value)
    return out.getvalue()


def test_a_rotation_signs_with_both_secrets_for_the_overlap_then_only_the_new(
    factory, settings, receivers
):
    r = receivers()
    old = connect(factory, "acme", r, OVERLAP)
    with factory.begin() as s:
        new = webhooks.configure(tenants.require(s, "acme"), r.url, OVERLAP, rotate=True)
    assert new != old

    # During the overlap: a receiver still on the OLD secret verifies
    enrich(factory, settings, "acme", 1)
    deliver_due(factory, OVERLAP)
    phase_1 = statuses(factory)
    assert set(phase_1) == {"delivered"} and r.bad_signatures == 0
    header = r.requests[-1].headers["webhook-signature"]
    assert len(header.split(" ")) == 2 and all(v.startswith("v1,") for v in header.split(" "))
    # ... and one on the NEW secret verifies too (the same request, checked by each)
    first = r.requests[-1]
    for secret in (old, new):
        Webhook(secret).verify(first.body, first.headers, json_parse=False)

    # After the window only the new secret signs: the old receiver refuses, the new accepts
    with factory.begin() as s:
        s.execute(update(Tenant).values(webhook_previous_until=utcnow() - timedelta(seconds=1)))
    enrich(factory, settings, "acme", 1)
    deliver_due(factory, OVERLAP)
    phase_2 = statuses(factory)[len(phase_1) :]
    assert set(phase_2) == {"stopped"} and r.bad_signatures == len(phase_2)
    assert len(r.requests[-1].headers["webhook-signature"].split(" ")) == 1
    r.secret = new
    enrich(factory, settings, "acme", 1)
    deliver_due(factory, OVERLAP)
    phase_3 = statuses(factory)[len(phase_1) + len(phase_2) :]
    assert phase_3 and set(phase_3) == {"delivered"} and r.bad_signatures == len(phase_2)


def test_signing_secrets_hold_the_previous_one_only_inside_its_window():
    now = utcnow()
    later = now + timedelta(seconds=5)
    assert webhooks.signing_secrets("a", "b", later, now) == ("a", "b")
    assert webhooks.signing_secrets("a", "b", now, now) == ("a",)
    assert webhooks.signing_secrets("a", None, later, now) == ("a",)
    assert webhooks.signing_secrets(None, "b", later, now) == ()


def test_changing_the_url_keeps_the_secret_and_new_secret_rotates_with_overlap(
    factory, receivers, loopback_cli
):
    one, two = receivers(), receivers()
    with factory.begin() as s:
        tenants.create_tenant(s, "acme")

    code, out, _ = loopback_cli("webhook", "acme", one.url)
    secret = out.rsplit(": ", 1)[1].strip()
    assert code == 0 and secret.startswith("whsec_") and "shown once" in out

    code, out, _ = loopback_cli("webhook", "acme", two.url)
    assert code == 0 and "keeps its signing secret" in out and "whsec_" not in out
    t = tenant_row(factory)
    assert (t.webhook_url, t.webhook_secret, t.webhook_previous_secret) == (two.url, secret, None)

    code, out, _ = loopback_cli("webhook", "acme", "--new-secret")
    t = tenant_row(factory)
    assert code == 0 and t.webhook_url == two.url and t.webhook_secret != secret
    assert t.webhook_secret in out and "the old secret also signs every event until" in out
    assert t.webhook_previous_secret == secret
    assert t.webhook_previous_until - utcnow() > timedelta(hours=23)

    with factory() as s:
        rows = audit.entries(s, t.id, action=audit.WEBHOOK_CHANGED)
    assert [(r.subject, r.details["secret"]) for r in rows] == [
        ("127.0.0.1", "new"), ("127.0.0.1", "kept"), ("127.0.0.1", "rotated"),
    ]  # fmt: skip
    assert all(secret not in str(r.details) for r in rows)

    code, out, _ = loopback_cli("webhook", "acme", "--off")
    t = tenant_row(factory)
    assert code == 0 and (t.webhook_url, t.webhook_secret, t.webhook_previous_secret) == (
        None, None, None,
    )  # fmt: skip


def test_webhook_test_prints_the_receivers_answer_and_writes_no_event(
    factory, settings, receivers, loopback_cli
):
    r = receivers()
    connect(factory, "acme", r)

    code, out, _ = loopback_cli("webhook", "test", "acme")
    assert code == 0 and re.search(r"answered HTTP 200 in \d+ ms: ok$", out.strip()), out
    assert r.requests[-1].webhook_id.startswith("msg_test_")
    assert '"type":"webhook.test"' in r.requests[-1].body

    r.secret = webhooks.new_secret()  # the receiver verifies with a secret not ours
    code, out, _ = loopback_cli("webhook", "test", "acme")
    assert code == 1 and "answered HTTP 401" in out and out.strip().endswith("bad signature")
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(OutboxEvent)) == 0

    with factory.begin() as s:
        tenants.create_tenant(s, "quiet")
    code, _, err = loopback_cli("webhook", "test", "quiet")
    assert code != 0 and "has no webhook" in err and "Traceback" not in err


def test_the_delivery_log_lists_attempts_in_cli_and_api_and_is_bounded(
    factory, settings, receivers, loopback_cli, client
):
    r = receivers(status=500)  # the first round gets 500s (retried), the next ones 200
    secret = connect(factory, "acme", r)
    enrich(factory, settings, "acme", 1)
    deliver_due(factory, CONFIG, max_rounds=1)
    r.status = 200
    test_delivery.deliver_until(
        factory, CONFIG, lambda: set(statuses(factory)) == {"delivered"}, what="delivered"
    )
    ids = {e.id for e in events_of(factory)}

    code, out, _ = loopback_cli("webhook", "log", "acme")
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) >= 2
    assert "delivered" in lines[0] and "HTTP 200" in lines[0]
    assert "retried" in lines[-1] and "HTTP 500" in lines[-1]
    assert secret not in out and r.url not in out

    with factory() as s:
        key = tenants.rotate_key(tenants.require(s, "acme"))
        s.commit()
    answer = client.get(
        "/api/enrichment/webhook/acme/deliveries?limit=1",
        headers={"Authorization": f"Bearer {key}"},
    )
    assert answer.status_code == 200
    [item] = answer.json()["items"]
    assert item["event_id"] in ids and (item["outcome"], item["status_code"]) == ("delivered", 200)
    assert item["duration_ms"] is not None and secret not in answer.text

    with factory.begin() as s:
        tid = tenants.require(s, "acme").id
        total = len(delivery_log.recent(s, tid, limit=500))
        assert delivery_log.prune(s, tid, keep=1) == total - 1
        assert [i.outcome for i in delivery_log.recent(s, tid)] == ["delivered"]
