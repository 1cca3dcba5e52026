"""Secrets never reach a log: the Anthropic API key, the Slack webhook URL and the PagerDuty
routing key.

Given a real worker and beat (provider anthropic against the fake server, with faults,
SLACK_WEBHOOK_URL pointing at a local receiver that fails first, and PAGERDUTY_ROUTING_KEY
with a local PagerDuty receiver that answers 500 first), when a chain runs and the monitor
evaluates alerts (a critical one fires: the tenant's completeness threshold is 101 %), in the
worker and in this process, then no distinctive string appears in the worker's or beat's log
file, nor in this process's stdout/stderr.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select

from enrichment.alerting import dispatch
from enrichment.core.models import ExceptionRecord
from enrichment.core.settings import AlertPolicy, MonitorConfig, Settings
from enrichment.metrics.monitor import run_monitor
from enrichment.tooling.fake_anthropic import FakeAnthropic
from enrichment.tooling.pagerduty_receiver import PagerDutyReceiver
from tests.conftest import REDIS_URL
from tests.factories import make_record, make_tenant
from tests.fleet import fleet_env, start_beat, start_worker, wait_for

pytestmark = pytest.mark.slow

API_KEY = "sk-ant-CANARYKEY-5f1e9b7c3a"
SLACK_SECRET = "CANARYHOOK-8d2c4e6a"
PD_KEY = "CANARYPDKEY-3b7e19f0c2d84a6e51f9"  # 32 characters, as PagerDuty's keys
ALWAYS_CRITICAL = {"alert_thresholds": {"completeness_critical": 101}}


class Receiver(BaseHTTPRequestHandler):
    """A Slack webhook stand-in: 500 on every other call, "ok" otherwise."""

    calls = 0

    def do_POST(self) -> None:  # noqa: N802 (the stdlib's naming)
        self.rfile.read(int(self.headers.get("content-length") or 0))
        Receiver.calls += 1
        status, body = (500, b"oops") if Receiver.calls % 2 else (200, b"ok")
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        pass


@pytest.fixture
def pd():
    with PagerDutyReceiver() as receiver:
        receiver.fail_next(500, 500, 500, retry_after=0)
        yield receiver


@pytest.fixture
def slack_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/services/T0/B0/{SLACK_SECRET}"
    server.shutdown()
    server.server_close()


def seed(factory, n: int) -> None:
    with factory.begin() as s:
        tenant = make_tenant(s, "canary-3pl", settings=ALWAYS_CRITICAL)
        for _ in range(n):
            make_record(s, tenant)


def enriched_or_escalated(factory, n: int):
    R = ExceptionRecord
    done = (R.enriched_at.is_not(None)) | (R.escalated_at.is_not(None))

    def check() -> bool:
        with factory() as s:
            return s.scalar(select(func.count()).where(done)) == n

    return check


def test_no_secret_in_any_log(pg_url, factory, redis_client, tmp_path, slack_url, pd, capfd):
    seed(factory, 8)
    with FakeAnthropic(api_key=API_KEY, faults="mix=0.4,401=0.05", retry_after_s=0.1) as fake:
        env = fleet_env(
            pg_url,
            REDIS_URL,
            tmp_path,
            ENRICHMENT_AI_PROVIDER="anthropic",
            ANTHROPIC_API_KEY=API_KEY,
            ANTHROPIC_BASE_URL=fake.base_url,
            ENRICHMENT_AI_TIMEOUT_S="1",
            ENRICHMENT_BACKOFF_SCALE="0.0002",
            # Each 401 opens the provider breaker: probe again within a second, not 15 s.
            ENRICHMENT_BREAKER_PROBE_INITIAL_S="0.5",
            ENRICHMENT_BREAKER_PROBE_MAX_S="1",
            ENRICHMENT_MONITOR_INTERVAL_S="1",
            ENRICHMENT_ALERT_FOR_EVALUATIONS="1",
            ENRICHMENT_ALERT_MIN_SAMPLE="0",
            SLACK_WEBHOOK_URL=slack_url,
            PAGERDUTY_ROUTING_KEY=PD_KEY,
            ENRICHMENT_PAGERDUTY_URL=pd.url,
            ENRICHMENT_WEBHOOK_ALLOW_PRIVATE="1",  # the receivers are http:// on loopback
            ENRICHMENT_LOG_FORMAT="json",
        )
        worker = start_worker(env, tmp_path / "worker.log", name="w1")
        beat = start_beat(env, tmp_path / "beat.log", tmp_path / "beat.db")
        try:
            wait_for(enriched_or_escalated(factory, 8), timeout_s=90, what="records terminal")
            alert_in_process(pg_url, slack_url, pd.url)
        finally:
            beat.stop()
            worker.stop()

    out = capfd.readouterr()
    logs = {"worker": worker.text(), "beat": beat.text(), "stdout": out.out, "stderr": out.err}
    assert "anthropic.call" in logs["worker"] and "sweep.claimed" in logs["worker"]
    assert "pagerduty.sent" in logs["worker"]  # the worker's monitor paged, too
    assert logs["worker"].count("ratelimit.on") == 1  # one start-up line: which Redis
    for name, text in logs.items():
        assert API_KEY not in text, f"API key in {name} log"
        assert SLACK_SECRET not in text, f"Slack webhook in {name} log"
        assert PD_KEY not in text, f"PagerDuty routing key in {name} log"
    assert Receiver.calls > 0  # the alert path really ran against the receiver
    assert any(r.status == 500 for r in pd.requests)  # and PagerDuty's retries too
    assert any(e["routing_key"] == PD_KEY for e in pd.events)


def alert_in_process(pg_url: str, slack_url: str, pd_url: str) -> None:
    """The monitor and its alerts in this process, with a webhook, a routing key and every
    alert firing."""
    from enrichment.core import db
    from enrichment.core.settings_sections import (
        PagerDutyConfig,
        RoutingConfig,
        SlackConfig,
        WebhookConfig,
    )

    factory = db.session_factory(pg_url)
    snaps = run_monitor(factory, Settings(database_url=pg_url), config=MonitorConfig())
    policy = AlertPolicy(for_evaluations=1, min_sample=0)
    config = SlackConfig(webhook_url=slack_url, max_attempts=2, timeout_s=2)
    paging = RoutingConfig(pagerduty=PagerDutyConfig(routing_key=PD_KEY, url=pd_url, timeout_s=2))
    local = WebhookConfig(allow_private=True)  # the receivers are http:// on loopback
    settings = Settings(
        database_url=pg_url, alerts=policy, slack=config, routing=paging, webhooks=local
    )
    dispatch.run_alerts(factory, snaps, settings)
