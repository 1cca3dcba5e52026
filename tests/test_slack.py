"""Slack delivery against a local HTTP receiver on 127.0.0.1 (no network)."""

from __future__ import annotations

import json
import logging
import socket
import threading
from dataclasses import replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import structlog

from enrichment.alerting import slack
from enrichment.alerting.alerts import Notification
from enrichment.alerting.dispatch import run_alerts
from enrichment.core.models import Tenant
from enrichment.core.monitor_models import Alert
from enrichment.core.settings import AlertPolicy, SlackConfig, WebhookConfig
from enrichment.metrics.monitor import run_monitor
from tests.factories import make_record, make_tenant

SECRET = "T00000000/B00000000/XXXXsecretXXXXtoken"
CONFIG = SlackConfig(timeout_s=2.0, max_attempts=4, max_retry_after_s=5.0)
# The receivers here are http:// on 127.0.0.1: only ENRICHMENT_WEBHOOK_ALLOW_PRIVATE admits them.
LOCAL = WebhookConfig(allow_private=True)


class Receiver:
    """Answers each POST with the next scripted (status, headers, body); records the JSON."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str], str]] = []
        self.received: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (stdlib name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(json.loads(body))
                code, headers, text = receiver.script.pop(0) if receiver.script else (200, {}, "ok")
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(text.encode())

            def log_message(self, *args) -> None:  # keep the server quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/{SECRET}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def sleeps():
    return []


def note(**kw) -> Notification:
    base = dict(
        tenant="demo-3pl",
        kind="firing",
        metric="backlog",
        severity="critical",
        value=1500.0,
        threshold=1000.0,
        unit=" records",
        since=datetime(2026, 11, 20, 12, 0, tzinfo=UTC),
    )
    return Notification(**{**base, **kw})


def post(receiver, sleeps, payload=None, config=CONFIG):
    message = payload or slack.build_message([note()])
    return slack.post(receiver.url, message, config, allow_private=True, sleep=sleeps.append)


def test_message_has_text_and_blocks_with_what_to_do(receiver, sleeps):
    post(receiver, sleeps)
    [msg] = receiver.received
    assert msg["text"] == "[enrichment] demo-3pl: CRITICAL backlog=1500.0 records"
    section = msg["blocks"][0]["text"]["text"]
    for part in ("CRITICAL", "`backlog`", "demo-3pl", "1500.0 records", "1000.0 records"):
        assert part in section
    assert "What to do:" in section and "/api/enrichment/process/demo-3pl" in section


def test_resolved_message_says_so_and_links_the_report():
    msg = slack.build_message(
        [note(kind="resolved", value=500.0)], report_url="https://enr.test/r.html"
    )
    assert msg["text"].startswith("[enrichment] demo-3pl: RESOLVED backlog")
    assert "What to do" not in msg["blocks"][0]["text"]["text"]
    assert "https://enr.test/r.html" in msg["blocks"][-1]["elements"][0]["text"]


def test_429_is_retried_after_retry_after(receiver, sleeps):
    receiver.script = [(429, {"Retry-After": "0"}, "rate_limited")]
    post(receiver, sleeps)
    assert len(receiver.received) == 2
    assert sleeps == [0.0]


def test_5xx_is_retried_with_backoff_then_succeeds(receiver, sleeps):
    receiver.script = [(500, {}, "rollup_error"), (503, {}, "unavailable")]
    post(receiver, sleeps)
    assert len(receiver.received) == 3
    assert len(sleeps) == 2 and all(0 < s <= 11 for s in sleeps)


def test_5xx_until_attempts_run_out_raises_unavailable(receiver, sleeps):
    receiver.script = [(500, {}, "rollup_error")] * 10
    with pytest.raises(slack.SlackUnavailable) as info:
        post(receiver, sleeps)
    assert len(receiver.received) == CONFIG.max_attempts
    assert info.value.status == 500 and info.value.error == "rollup_error"


def test_retry_after_longer_than_the_cap_gives_up_at_once(receiver, sleeps):
    receiver.script = [(429, {"Retry-After": "120"}, "rate_limited")]
    with pytest.raises(slack.SlackUnavailable):
        post(receiver, sleeps)
    assert len(receiver.received) == 1 and sleeps == []


def test_4xx_is_never_retried_and_slacks_error_is_logged_without_the_url(
    receiver, sleeps, capsys, caplog
):
    receiver.script = [(400, {}, "invalid_payload")]
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as logs, pytest.raises(slack.SlackRejected) as info:
        post(receiver, sleeps)
    assert len(receiver.received) == 1 and sleeps == []
    assert info.value.status == 400 and info.value.error == "invalid_payload"
    assert any(e.get("error") == "invalid_payload" and e.get("status") == 400 for e in logs)
    everything = " ".join(
        [str(logs), caplog.text, *capsys.readouterr(), str(info.value), repr(info.value)]
    )
    assert "secret" not in everything and receiver.url not in everything
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_connection_refused_is_unavailable_and_hides_the_url(sleeps):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/services/{SECRET}"
    with pytest.raises(slack.SlackUnavailable) as info:
        config = replace(CONFIG, max_attempts=2)
        slack.post(url, {"text": "x"}, config, allow_private=True, sleep=sleeps.append)
    assert "secret" not in str(info.value) and info.value.__cause__ is None
    assert len(sleeps) == 1


def test_bad_url_is_rejected_without_echoing_it(sleeps):
    with pytest.raises(slack.SlackRejected) as info:
        slack.post(f"nope://{SECRET}", {"text": "x"}, CONFIG, sleep=sleeps.append)
    assert "secret" not in str(info.value)


def test_webhook_per_tenant_wins_over_the_global_one():
    cfg = replace(CONFIG, webhook_url="https://global")
    assert slack.webhook_for({"slack_webhook_url": "https://tenant"}, cfg) == "https://tenant"
    assert slack.webhook_for({}, cfg) == "https://global"
    assert slack.webhook_for({}, CONFIG) is None


# --- end to end: monitor -> alerts -> Slack receiver -----------------------------------


def _big_backlog_tenant(factory, url: str) -> None:
    with factory.begin() as s:
        tenant = make_tenant(s, "slack-3pl", settings={"slack_webhook_url": url})
        tenant.settings = {"slack_webhook_url": url, "alert_thresholds": {"backlog_critical": 2}}
        for _ in range(3):
            make_record(s, tenant)


def test_monitor_alert_reaches_slack_once_and_state_is_stored(factory, settings, receiver, capsys):
    _big_backlog_tenant(factory, receiver.url)
    policy = AlertPolicy(for_evaluations=2, repeat_interval_s=3600, min_sample=1)
    alerting = replace(settings, alerts=policy, slack=CONFIG, webhooks=LOCAL)
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            run_alerts(factory, run_monitor(factory, settings), alerting)
    assert len(receiver.received) == 1  # pending, firing (sent), still firing (not re-sent)
    assert "backlog" in receiver.received[0]["text"]
    with factory() as s:
        tid = s.query(Tenant).filter_by(name="slack-3pl").one().id
        row = s.query(Alert).filter_by(tenant_id=tid, metric="backlog").one()
        assert row.state == "firing" and row.notifications_sent == 1 and row.last_error is None
    assert "secret" not in str(logs) + "".join(capsys.readouterr())


def test_rejected_delivery_is_recorded_and_not_hammered(factory, settings, receiver, capsys):
    _big_backlog_tenant(factory, receiver.url)
    receiver.script = [(404, {}, "channel_not_found")]
    policy = AlertPolicy(for_evaluations=1, repeat_interval_s=3600, min_sample=1)
    alerting = replace(settings, alerts=policy, slack=CONFIG, webhooks=LOCAL)
    with structlog.testing.capture_logs() as logs:
        out = run_alerts(factory, run_monitor(factory, settings), alerting)
        run_alerts(factory, run_monitor(factory, settings), alerting)
    assert len(receiver.received) == 1
    assert "channel_not_found" in out[0].error
    with factory() as s:
        row = s.query(Alert).filter_by(metric="backlog").one()
        assert "channel_not_found" in row.last_error and row.notifications_sent == 0
    assert "secret" not in str(logs) + "".join(capsys.readouterr()) + str(out)
