"""A tenant's settings, parsed once: types, defaults and bounds; a bad value refused on write
and ignored (logged) on read; and one weight for the sweep and the AI rate limit alike."""

from __future__ import annotations

from datetime import timedelta

import pytest
import structlog

from enrichment.core import db
from enrichment.core.models import utcnow
from enrichment.core.pipeline import begin_stage
from enrichment.core.selection import claim
from enrichment.core.tenant_settings import TenantSettings, TenantSettingsError
from enrichment.providers.ratelimit import RateLimiter
from tests.factories import make_record, make_tenant

# -- the model ----------------------------------------------------------------------------


def test_an_empty_config_is_every_default():
    own = TenantSettings.parse(None)
    assert own == TenantSettings()
    assert (own.weight, own.batch_mode, own.max_in_flight, own.audit_rate) == (
        1.0,
        "auto",
        None,
        None,
    )


def test_numeric_strings_are_read_as_numbers_everywhere():
    own = TenantSettings.parse(
        {
            "weight": "2",
            "max_in_flight": "4",
            "daily_budget_usd": "1.5",
            "batch_min_records": "20",
            "audit_rate": "0.25",
            "alert_thresholds": {"backlog_critical": "7"},
        }
    )
    assert (own.weight, own.max_in_flight, own.daily_budget_usd) == (2.0, 4, 1.5)
    assert (own.batch_min_records, own.audit_rate) == (20, 0.25)
    assert dict(own.alert_thresholds) == {"backlog_critical": 7.0}


@pytest.mark.parametrize(
    ("key", "raw"),
    [
        ("weight", 0),
        ("weight", True),
        ("weight", "inf"),
        ("max_in_flight", 4.5),
        ("max_in_flight", -1),
        ("daily_budget_usd", -0.01),
        ("batch_mode", "sometimes"),
        ("batch_min_records", 0),
        ("audit_rate", 1.5),
        ("alert_thresholds", [1]),
        ("slack_webhook_url", 7),
    ],
)
def test_a_bad_value_is_refused_on_write_in_one_line_naming_the_key(key, raw):
    with pytest.raises(TenantSettingsError) as caught:
        TenantSettings.validate({key: raw})
    message = str(caught.value)
    assert f"'{key}'" in message and "\n" not in message


def test_a_bad_threshold_names_its_entry_and_an_unknown_key_is_refused():
    with pytest.raises(TenantSettingsError, match=r"'alert_thresholds\.backlog_critical'"):
        TenantSettings.validate({"alert_thresholds": {"backlog_critical": "lots"}})
    with pytest.raises(TenantSettingsError, match=r"unknown tenant setting 'wieght'"):
        TenantSettings.validate({"wieght": 2})


def test_a_bad_value_in_a_stored_row_is_ignored_and_logged_once():
    # A config no other test uses: parsed results are cached per distinct config.
    stored = {"weight": 3, "max_in_flight": "many", "daily_budget_usd": 917.25}
    with structlog.testing.capture_logs() as logs:
        first = TenantSettings.parse(stored)
        again = TenantSettings.parse(dict(stored))
    assert (first.weight, first.max_in_flight, first.daily_budget_usd) == (3.0, None, 917.25)
    assert again is first
    ignored = [e for e in logs if e["event"] == "tenant_settings.ignored"]
    assert [e["key"] for e in ignored] == ["max_in_flight"]


def test_validate_and_parse_agree_on_good_settings():
    config = {"weight": 0.5, "batch_mode": "always", "alert_routes": {"warning": ["slack"]}}
    assert TenantSettings.validate(config) == TenantSettings.parse(config)


# -- one weight, two places ---------------------------------------------------------------

RPM, BURST, STEP_S = 600, 2, 0.01  # 10 tokens a second, asked for every 10 ms


def test_a_weight_stored_as_the_string_2_doubles_both_the_sweep_share_and_the_rate_share(
    factory, settings, redis_client
):
    # Given a tenant whose weight is stored as the string "2" and one without a weight,
    # both with more due records than one claim takes
    due = utcnow() - timedelta(minutes=1)
    with factory.begin() as s:
        heavy = make_tenant(s, "heavy", settings={"weight": "2"})
        plain = make_tenant(s, "plain", settings={})
        for tenant in (heavy, plain):
            for _ in range(40):
                make_record(s, tenant, next_attempt_at=due)
        heavy_id, plain_id = heavy.id, plain.id

    # When a sweep claims 30
    with factory.begin() as s:
        report = claim(s, settings, 30)

    # Then the sweep gives "heavy" twice the share of "plain"
    assert report.claimed == {heavy_id: 20, plain_id: 10}

    # And each tenant's stage carries the same weight to the AI rate limiter
    weights = {}
    with db.get_engine(settings.database_url).begin() as conn:
        for c in report.claims:
            _, ctx = begin_stage(conn, settings, "order_analysis", c.record_id, c.lease_token)
            weights[ctx.tenant] = ctx.weight
    assert weights == {"heavy": 2.0, "plain": 1.0}

    # And the limiter, asked in turn by both, grants "heavy" twice as many calls
    limiter = RateLimiter(redis_client, rpm=RPM, burst=BURST, key="tenant-settings")
    granted = dict.fromkeys(weights, 0)
    for step in range(1000):  # 10 s of the limiter's clock
        for tenant, weight in weights.items():
            if limiter.acquire(tenant, weight, now_s=1000.0 + step * STEP_S) == 0.0:
                granted[tenant] += 1
    assert 64 <= granted["heavy"] <= 70 and 31 <= granted["plain"] <= 36
