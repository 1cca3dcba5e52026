"""Severity routing: one table of severities to channels, per-tenant overrides, and each
route checked against local receivers that speak Slack's and PagerDuty's formats."""

from __future__ import annotations

from datetime import timedelta

import structlog

from enrichment.alerting import routing
from enrichment.alerting.routing import PAGERDUTY, ROUTES, SLACK, routes_for, split
from enrichment.core.models import Tenant, utcnow
from enrichment.core.monitor_models import Alert, AlertSilence
from tests import test_pagerduty
from tests.factories import make_record
from tests.test_pagerduty import ROUTING_KEY, alerting, enrich_all, evaluate, note
from tests.test_pagerduty import tenant_with_backlog as tenant

pd, slack_hook = test_pagerduty.pd, test_pagerduty.slack_hook  # the fixtures, found by name


def test_the_table_pages_on_critical_slacks_warnings_and_pushes_no_info():
    assert ROUTES == {"critical": (PAGERDUTY, SLACK), "warning": (SLACK,), "info": ()}
    assert routes_for({}) == ROUTES


def test_a_tenant_overrides_the_severities_it_names():
    own = {"critical": ["slack"], "warning": ["slack", "pagerduty", "slack"]}
    routes = routes_for({"alert_routes": own})
    assert routes["critical"] == (SLACK,) and routes["warning"] == (SLACK, PAGERDUTY)
    assert routes_for({"alert_routes": {"warning": []}})["warning"] == ()


def test_an_invalid_override_is_ignored_and_logged():
    with structlog.testing.capture_logs() as logs:
        assert routes_for({"alert_routes": "pagerduty"}) == ROUTES
        assert routes_for({"alert_routes": {"info": ["slack"]}})["info"] == ()
        assert routes_for({"alert_routes": {"warning": ["email"]}})["warning"] == (SLACK,)
        assert routes_for({"alert_routes": {"critical": "slack"}})["critical"] == ROUTES["critical"]
    assert [e["event"] for e in logs] == ["routing.bad_override"] * 4
    assert "info is never pushed" in logs[1]["reason"]


def test_split_sends_each_note_on_its_route_and_a_muted_resolve_only_to_pagerduty():
    crit, warn = note(), note(metric="escalated", severity="warning")
    muted = note(metric="quality", kind="resolved", muted=True)
    shares = split([crit, warn, muted], ROUTES)
    assert list(shares) == [PAGERDUTY, SLACK]  # the page goes first
    assert shares[PAGERDUTY] == [crit, muted] and shares[SLACK] == [crit, warn]
    assert split([warn], {**ROUTES, "warning": ()}) == {}


def test_an_outcome_is_delivered_only_when_every_configured_channel_delivered():
    crit = note()
    ok = routing.Sent(SLACK, (crit,), None, True)
    down = routing.Sent(PAGERDUTY, (crit,), "pagerduty answered 503: x", False)
    missing = routing.Sent(PAGERDUTY, (crit,), "no PagerDuty routing key configured", True, True)
    assert routing.outcome(crit, [ok, down]) == ("pagerduty answered 503: x", False)
    assert routing.outcome(crit, [ok, missing]) == (None, True)  # skipped, logged
    assert routing.outcome(crit, [missing]) == ("no PagerDuty routing key configured", True)
    assert routing.outcome(crit, []) == (None, True)


# --- against the receivers ----------------------------------------------------------------


def _with_an_escalation(factory, tenant_id: int) -> None:
    with factory.begin() as s:
        make_record(s, s.get(Tenant, tenant_id), escalated_at=utcnow())


def test_critical_goes_to_both_channels_and_a_warning_to_slack_only(
    factory, settings, pd, slack_hook
):
    tid = tenant(
        factory, "mixed-3pl", pagerduty_routing_key=ROUTING_KEY, slack_webhook_url=slack_hook.url
    )
    _with_an_escalation(factory, tid)  # escalated_warning fires at once
    [delivery] = evaluate(factory, settings, alerting(settings, pd.url))
    assert pd.actions() == [("trigger", "enrichment/mixed-3pl/backlog/critical")]
    [message] = slack_hook.received
    assert "CRITICAL backlog" in message["text"] and "WARNING escalated" in message["text"]
    assert delivery.error is None and {s.channel for s in delivery.sent} == {PAGERDUTY, SLACK}


def test_a_tenant_can_page_on_warnings_too(factory, settings, pd, slack_hook):
    routes = {"warning": ["slack", "pagerduty"]}
    tid = tenant(
        factory, "loud-3pl", records=0, alert_routes=routes, pagerduty_routing_key=ROUTING_KEY
    )
    _with_an_escalation(factory, tid)
    evaluate(factory, settings, alerting(settings, pd.url))
    [event] = pd.events
    assert event["dedup_key"] == "enrichment/loud-3pl/escalated/warning"
    assert event["payload"]["severity"] == "warning"


def test_a_tenant_can_turn_paging_off(factory, settings, pd, slack_hook):
    routes = {"critical": ["slack"]}
    tenant(
        factory,
        "quiet-3pl",
        alert_routes=routes,
        pagerduty_routing_key=ROUTING_KEY,
        slack_webhook_url=slack_hook.url,
    )
    evaluate(factory, settings, alerting(settings, pd.url))
    assert pd.requests == [] and len(slack_hook.received) == 1


def test_without_a_routing_key_critical_still_reaches_slack(factory, settings, pd, slack_hook):
    tid = tenant(factory, "slack-only-3pl", slack_webhook_url=slack_hook.url)
    with structlog.testing.capture_logs() as logs:
        [delivery] = evaluate(factory, settings, alerting(settings, pd.url))
    assert pd.requests == [] and len(slack_hook.received) == 1 and delivery.error is None
    assert any(e["event"] == "alert.no_receiver" and e["channel"] == PAGERDUTY for e in logs)
    with factory() as s:
        row = s.query(Alert).filter_by(tenant_id=tid, metric="backlog").one()
        assert row.notifications_sent == 1 and row.last_error is None


def test_a_resolve_during_a_silence_closes_the_page_but_stays_off_slack(
    factory, settings, pd, slack_hook
):
    tid = tenant(
        factory, "hush-3pl", pagerduty_routing_key=ROUTING_KEY, slack_webhook_url=slack_hook.url
    )
    paging = alerting(settings, pd.url)
    evaluate(factory, settings, paging)
    with factory.begin() as s:
        now = utcnow()
        s.add(
            AlertSilence(
                tenant_id=tid,
                metric=None,
                starts_at=now - timedelta(minutes=1),
                ends_at=now + timedelta(hours=1),
            )
        )
    enrich_all(factory, tid)
    evaluate(factory, settings, paging)
    key = "enrichment/hush-3pl/backlog/critical"
    assert pd.actions() == [("trigger", key), ("resolve", key)] and pd.open_alerts() == set()
    assert len(slack_hook.received) == 1  # the firing message only
    with factory() as s:
        assert s.query(Alert).filter_by(tenant_id=tid, metric="backlog").one().state == "inactive"
