"""CRITICAL pages through PagerDuty's Events API v2, against a local receiver that validates
every event the way PagerDuty does (enrichment/tooling/pagerduty_receiver.py)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog
from sqlalchemy import update

from enrichment.alerting import pagerduty, push
from enrichment.alerting.alerts import Notification
from enrichment.alerting.dispatch import run_alerts
from enrichment.core.models import ExceptionRecord, utcnow
from enrichment.core.monitor_models import Alert
from enrichment.core.settings import Settings
from enrichment.core.settings_sections import AlertPolicy, PagerDutyConfig, RoutingConfig
from enrichment.metrics.monitor import run_monitor
from enrichment.tooling.pagerduty_receiver import PagerDutyReceiver, validate
from tests.factories import make_record, make_tenant
from tests.test_slack import CONFIG as SLACK_CONFIG
from tests.test_slack import LOCAL
from tests.test_slack import Receiver as SlackReceiver

ROUTING_KEY = "CANARY-PD-0123456789abcdefghijk1"  # 32 characters, as PagerDuty's keys
PD_CONFIG = PagerDutyConfig(timeout_s=2.0, max_attempts=3, max_retry_after_s=5.0)
CAPTURED = Path("var/pagerduty-events.json")
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def pd():
    with PagerDutyReceiver() as receiver:
        yield receiver


@pytest.fixture
def slack_hook():
    receiver = SlackReceiver()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def note(**kw) -> Notification:
    base = dict(tenant="demo-3pl", kind="firing", metric="backlog", severity="critical",
                value=1500.0, threshold=1000.0, unit=" records", since=T0)  # fmt: skip
    return Notification(**{**base, **kw})


def alerting(settings: Settings, pd_url: str, **policy) -> Settings:
    """The test settings with a fast policy, Slack as in test_slack and PagerDuty at pd_url."""
    rules = dict(for_evaluations=1, repeat_interval_s=3600, min_sample=50) | policy
    paging = RoutingConfig(pagerduty=replace(PD_CONFIG, url=pd_url))
    return replace(
        settings, alerts=AlertPolicy(**rules), slack=SLACK_CONFIG, routing=paging, webhooks=LOCAL
    )


def tenant_with_backlog(factory, name: str, *, records: int = 3, **own) -> int:
    """A tenant whose backlog_critical threshold is 2 records, with `records` waiting."""
    with factory.begin() as s:
        tenant = make_tenant(s, name, settings={"alert_thresholds": {"backlog_critical": 2}, **own})
        for _ in range(records):
            make_record(s, tenant)
        return tenant.id


def enrich_all(factory, tenant_id: int) -> None:
    with factory.begin() as s:
        s.execute(
            update(ExceptionRecord)
            .where(ExceptionRecord.tenant_id == tenant_id)
            .values(enriched_at=utcnow(), ai_label="OTHER", ai_confidence=0.9)
        )


def evaluate(factory, settings: Settings, alerting_settings: Settings):
    return run_alerts(factory, run_monitor(factory, settings), alerting_settings)


# --- the event --------------------------------------------------------------------------


def test_a_firing_alert_is_a_trigger_with_the_pd_cef_payload():
    body = pagerduty.event(note(), ROUTING_KEY, now=T0, report_url="https://enr.test/r.html")
    assert validate(body) == []
    assert body["event_action"] == "trigger" and body["routing_key"] == ROUTING_KEY
    assert body["dedup_key"] == "enrichment/demo-3pl/backlog/critical"
    payload = body["payload"]
    assert payload["summary"] == (
        "[enrichment] demo-3pl: CRITICAL backlog 1,500 records (threshold 1,000 records)"
    )
    assert (payload["severity"], payload["source"]) == ("critical", "enrichment/demo-3pl")
    assert (payload["component"], payload["group"], payload["class"]) == (
        "backlog", "demo-3pl", "backlog_critical",
    )  # fmt: skip
    assert payload["timestamp"] == "2026-11-20T12:00:00+00:00"
    details = payload["custom_details"]
    assert details["value"] == 1500.0 and details["threshold"] == 1000.0
    assert "/api/enrichment/process/demo-3pl" in details["what_to_do"]
    assert body["links"] == [{"href": "https://enr.test/r.html", "text": "Enrichment report"}]


def test_a_resolved_alert_is_a_resolve_with_the_same_dedup_key():
    trigger = pagerduty.event(note(), ROUTING_KEY, now=T0)
    resolve = pagerduty.event(note(kind="resolved", value=10.0), ROUTING_KEY, now=T0)
    assert resolve == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": trigger["dedup_key"],
    }
    assert validate(resolve) == []


def test_the_receiver_rejects_what_pagerduty_rejects():
    good = pagerduty.event(note(), ROUTING_KEY, now=T0)
    assert validate({**good, "routing_key": "short"})[0].startswith("Length of 'routing_key'")
    assert validate({**good, "event_action": "fire"})
    assert validate({**good, "payload": {**good["payload"], "severity": "high"}})
    assert validate({**good, "payload": {**good["payload"], "summary": "x" * 1025}})
    assert validate({**good, "surprise": 1}) == ["unknown field 'surprise'"]
    resolve = {"routing_key": ROUTING_KEY, "event_action": "resolve"}
    assert validate(resolve) == ["'dedup_key' is required for resolve"]


def test_tenant_routing_key_wins_over_the_global_one():
    config = replace(PD_CONFIG, routing_key="G" * 32)
    assert pagerduty.routing_key_for({"pagerduty_routing_key": ROUTING_KEY}, config) == ROUTING_KEY
    assert pagerduty.routing_key_for({}, config) == "G" * 32
    assert pagerduty.routing_key_for({"pagerduty_routing_key": ""}, PD_CONFIG) is None


# --- delivery and its retries -------------------------------------------------------------


def send(pd: PagerDutyReceiver, sleeps: list, body=None):
    body = body or pagerduty.event(note(), ROUTING_KEY, now=T0)
    config = replace(PD_CONFIG, url=pd.url)
    return pagerduty.send(body, config, allow_private=True, sleep=sleeps.append)


def test_an_accepted_event_answers_202_with_its_dedup_key(pd):
    assert send(pd, []) == "enrichment/demo-3pl/backlog/critical"
    assert [r.status for r in pd.requests] == [202]
    assert pd.open_alerts() == {"enrichment/demo-3pl/backlog/critical"}


def test_429_is_retried_after_retry_after(pd):
    pd.fail_next(429, retry_after=0)
    sleeps: list[float] = []
    send(pd, sleeps)
    assert [r.status for r in pd.requests] == [429, 202] and sleeps == [0.0]


def test_5xx_is_retried_with_backoff_then_accepted(pd):
    pd.fail_next(500, 503)
    sleeps: list[float] = []
    send(pd, sleeps)
    assert [r.status for r in pd.requests] == [500, 503, 202]
    assert len(sleeps) == 2 and all(0 < s <= 11 for s in sleeps)


def test_5xx_until_attempts_run_out_raises_unavailable(pd):
    pd.fail_next(*[502] * 5)
    with pytest.raises(push.PushUnavailable) as info:
        send(pd, [])
    assert len(pd.requests) == PD_CONFIG.max_attempts and info.value.status == 502


def test_a_400_is_never_retried_and_the_key_is_nowhere(pd, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    bad = {**pagerduty.event(note(), ROUTING_KEY, now=T0), "event_action": "fire"}
    with structlog.testing.capture_logs() as logs, pytest.raises(push.PushRejected) as info:
        send(pd, [], bad)
    assert [r.status for r in pd.requests] == [400]
    assert "Event object is invalid: 'event_action' is invalid" in info.value.error
    assert any(e.get("status") == 400 and "invalid" in e.get("error", "") for e in logs)
    seen = " ".join([str(logs), caplog.text, *capsys.readouterr(), str(info.value)])
    assert ROUTING_KEY not in seen and "CANARY-PD" not in seen
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_an_error_text_that_echoes_the_key_is_scrubbed(pd):
    pd.fail_next(403)
    body = pagerduty.event(note(), ROUTING_KEY, now=T0)
    original = pd.handle

    def echoing(text):  # a receiver that quotes the key back in its error
        status, answer, headers = original(text)
        return status, {**answer, "message": f"key {ROUTING_KEY} refused"}, headers

    pd.handle = echoing
    with pytest.raises(push.PushRejected) as info:
        send(pd, [], body)
    assert ROUTING_KEY not in str(info.value) and "[redacted]" in str(info.value)


# --- end to end: monitor -> alerts -> PagerDuty and Slack -------------------------------


def test_a_critical_backlog_alert_pages_then_resolves_with_the_same_dedup_key(
    factory, settings, pd, slack_hook, capsys
):
    tid = tenant_with_backlog(factory, "page-3pl", pagerduty_routing_key=ROUTING_KEY,
                              slack_webhook_url=slack_hook.url)  # fmt: skip
    paging = alerting(settings, pd.url, for_evaluations=2)
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):  # pending, firing (paged), still firing (not paged again)
            evaluate(factory, settings, paging)
        enrich_all(factory, tid)  # the backlog drains: 0 records waiting
        evaluate(factory, settings, paging)
    key = "enrichment/page-3pl/backlog/critical"
    assert pd.actions() == [("trigger", key), ("resolve", key)]
    assert [r.status for r in pd.requests] == [202, 202] and pd.open_alerts() == set()
    trigger, resolve = pd.events
    assert trigger["payload"]["severity"] == "critical" and trigger["routing_key"] == ROUTING_KEY
    assert trigger["payload"]["custom_details"]["value"] == 3.0
    assert set(resolve) == {"routing_key", "event_action", "dedup_key"}
    # Slack hears both too: CRITICAL goes to both channels.
    assert [m["text"].split(": ")[1].split()[0] for m in slack_hook.received] == [
        "CRITICAL", "RESOLVED",
    ]  # fmt: skip
    with factory() as s:
        row = s.query(Alert).filter_by(tenant_id=tid, metric="backlog").one()
        assert (row.state, row.notifications_sent, row.last_error) == ("inactive", 2, None)
    assert ROUTING_KEY not in str(logs) + "".join(capsys.readouterr())
    CAPTURED.parent.mkdir(exist_ok=True)
    CAPTURED.write_text(json.dumps(pd.events, indent=2) + "\n")


def test_a_transient_failure_keeps_the_page_owed_until_it_is_accepted(factory, settings, pd):
    tid = tenant_with_backlog(factory, "flaky-3pl", pagerduty_routing_key=ROUTING_KEY)
    paging = alerting(settings, pd.url)
    pd.fail_next(*[503] * PD_CONFIG.max_attempts, retry_after=0)
    [first] = evaluate(factory, settings, paging)
    assert "pagerduty answered 503" in first.error
    with factory() as s:
        row = s.query(Alert).filter_by(tenant_id=tid, metric="backlog").one()
        assert row.state == "firing" and row.last_notified_at is None
    evaluate(factory, settings, paging)  # the next evaluation pages again, and it lands
    assert pd.actions() == [("trigger", "enrichment/flaky-3pl/backlog/critical")]
    with factory() as s:
        row = s.query(Alert).filter_by(tenant_id=tid, metric="backlog").one()
        assert row.last_notified_at is not None and row.last_error is None


def test_a_rejected_page_is_recorded_and_not_sent_again(factory, settings, pd):
    tid = tenant_with_backlog(factory, "bad-key-3pl", pagerduty_routing_key="too-short")
    paging = alerting(settings, pd.url)
    [first] = evaluate(factory, settings, paging)
    evaluate(factory, settings, paging)
    assert [r.status for r in pd.requests] == [400]
    assert "Length of 'routing_key' is incorrect" in first.error
    with factory() as s:
        row = s.query(Alert).filter_by(tenant_id=tid, metric="backlog").one()
        assert "routing_key" in row.last_error and row.notifications_sent == 0
        assert row.state == "firing" and row.last_notified_at is not None  # given up on
