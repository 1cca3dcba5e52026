"""INFO notices: early signs (a rising failure rate, a growing queue wait, a budget at 80 %)
shown in the health route and on the report page, never pushed, never changing the status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from enrichment.alerting import notices
from enrichment.alerting.dispatch import run_alerts
from enrichment.alerting.notices import Point, find
from enrichment.core import tenants
from enrichment.core.models import utcnow
from enrichment.metrics.monitor import run_monitor
from enrichment.reporting import report_html, reports
from enrichment.tooling.pagerduty_receiver import PagerDutyReceiver
from tests.factories import make_record
from tests.test_monitor import attempt
from tests.test_pagerduty import ROUTING_KEY, alerting
from tests.test_slack import Receiver as SlackReceiver

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def series(values, *, step=10 * MIN, attempts=100, field="failure_rate_pct"):
    """Points `step` apart, the last one live."""
    pts = [Point(taken_at=T0 + i * step, failure_rate_pct=None, window_attempts=attempts,
                 oldest_due_age_s=None) for i in range(len(values))]  # fmt: skip
    return [p.model_copy(update={field: v}) for p, v in zip(pts, values, strict=True)]


def names(found) -> list[str]:
    return [n.name for n in found]


def check(points, settings=None, *, spend=0.0, crossed=frozenset(), min_sample=50):
    *stored, live = points
    live = live.model_copy(update={"spend_today_usd": spend})
    return find(live, stored, settings or {}, min_sample=min_sample, crossed=set(crossed))


def test_a_failure_rate_rising_over_the_window_is_a_notice():
    [notice] = check(series([2.0, 4.0, 6.0, 9.0, 11.0]))
    assert notice.name == "failure_trend_info" and notice.severity == "info"
    assert notice.value == pytest.approx(9.2)  # the fitted line's rise over 40 min
    assert notice.words == (
        "failure rate of AI attempts rising: up 9.2 points over the last 40 min, now 11.0 %"
    )


@pytest.mark.parametrize(
    ("values", "kw", "why"),
    [
        ([8.0, 9.0, 8.0, 9.0, 8.5], {}, "flat: noise, not a trend"),
        ([2.0, 11.0], {}, "two points are not a trend"),
        ([2.0, 6.0, 11.0], {"step": 4 * MIN}, "8 min is too short a span"),
        ([2.0, 6.0, 11.0], {"attempts": 10}, "too few attempts to judge a rate"),
        ([11.0, 6.0, 2.0], {}, "falling"),
    ],
)
def test_no_failure_trend_notice_without_a_real_rise(values, kw, why):
    assert check(series(values, **kw)) == [], why


def test_a_notice_gives_way_to_a_crossed_threshold_of_its_metric():
    rising = series([2.0, 10.0, 25.0])
    assert check(rising, crossed={"failure_rate"}) == []
    assert names(check(rising, crossed={"backlog"})) == ["failure_trend_info"]


def test_a_tenant_tunes_a_notice_by_its_name():
    rising = series([2.0, 4.0, 6.0])
    assert check(rising) == []  # up 4 points: under the default 5
    tuned = {"alert_thresholds": {"failure_trend_info": 3}}
    assert names(check(rising, tuned)) == ["failure_trend_info"]


def test_a_growing_wait_of_the_oldest_due_record_is_a_notice():
    ages = [0.0, 120.0, 420.0, 720.0]  # due since 12 min, never claimed
    [notice] = check(series(ages, step=5 * MIN, field="oldest_due_age_s"))
    assert notice.name == "queue_age_info" and notice.metric == "starvation"
    assert "now 12 min" in notice.words
    assert check(series([0.0, 60.0, 120.0, 200.0], step=5 * MIN, field="oldest_due_age_s")) == []


@pytest.mark.parametrize(("spend", "found"), [(7.99, []), (8.0, ["budget_info"]),
                                              (9.99, ["budget_info"]), (10.0, [])])  # fmt: skip
def test_a_budget_at_80_percent_is_a_notice_and_at_100_the_warning_takes_over(spend, found):
    point = series([None])
    assert names(check(point, {"daily_budget_usd": 10}, spend=spend)) == found
    assert check(point, {}, spend=spend) == []  # no budget, no notice


# --- in the health route, on the report page, and nowhere else --------------------------


@pytest.fixture
def noticed(factory, settings):
    """due-3pl: one record due for 12 min, never claimed (snapshots 10 and 5 min ago), and
    $8.50 of its $10 daily budget spent today."""
    now = utcnow()
    with factory.begin() as s:
        tenant, key = tenants.create_tenant(s, "due-3pl")
        tenant.settings = {"daily_budget_usd": 10}
        rec = make_record(s, tenant, next_attempt_at=now - 12 * MIN)
        attempt(s, rec, "failed", cost=8.5, at=now)
    for ago in (10, 5):
        run_monitor(factory, settings, now=now - ago * MIN)
    return key


def test_the_health_route_lists_the_notices_and_the_status_stays_healthy(client, noticed):
    body = client.get(
        "/api/enrichment/health/due-3pl", headers={"Authorization": f"Bearer {noticed}"}
    ).json()
    assert body["status"] == "healthy"
    assert [(n["name"], n["severity"]) for n in body["notices"]] == [
        ("queue_age_info", "info"), ("budget_info", "info"),
    ]  # fmt: skip
    assert body["notices"][1]["words"].startswith("AI spend today at 85 % of the daily budget")


def test_the_report_page_shows_the_notices(factory, settings, noticed):
    with factory() as s:
        tenant = tenants.by_name(s, "due-3pl")
        page = report_html.render(reports.report(s, tenant, settings, now=utcnow()))
    notices_html = page[page.index("<h2>Notices</h2>") :]
    assert "never sent to Slack or PagerDuty" in notices_html
    assert "AI spend today at 85 % of the daily budget" in notices_html
    assert "Wait of the oldest record due for enrichment growing" in notices_html


def test_notices_are_never_pushed(factory, settings, noticed):
    with factory.begin() as s:
        tenant = tenants.by_name(s, "due-3pl")
        hook = SlackReceiver()
        tenant.settings = {**tenant.settings, "slack_webhook_url": hook.url,
                           "pagerduty_routing_key": ROUTING_KEY}  # fmt: skip
    try:
        with PagerDutyReceiver() as pd:
            paging = alerting(settings, pd.url)
            with factory() as s:
                health = reports.health(s, tenants.by_name(s, "due-3pl"), settings, now=utcnow())
            assert len(health.notices) == 2
            assert run_alerts(factory, run_monitor(factory, settings), paging) == []
            assert pd.requests == []
        assert hook.received == []
    finally:
        hook.server.shutdown()
        hook.server.server_close()


def test_points_read_only_the_window_before_the_live_measurement(factory, settings, noticed):
    with factory() as s:
        tenant = tenants.by_name(s, "due-3pl")
        now = utcnow()
        got = notices.points(s, tenant.id, since=now - 7 * MIN, until=now)
    assert len(got) == 1 and got[0].oldest_due_age_s == pytest.approx(420.0, abs=1.0)
