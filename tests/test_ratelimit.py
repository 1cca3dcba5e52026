"""The fleet-wide token bucket, on real Redis: shared, atomic, and off when configured off."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest
from structlog.testing import capture_logs

from enrichment.core import db
from enrichment.core.pipeline import begin_stage
from enrichment.core.settings import ConfigurationError, Settings
from enrichment.core.tenant_settings import TenantSettings
from enrichment.providers import ratelimit
from enrichment.providers.ratelimit import RateLimiter
from tests.conftest import REDIS_URL
from tests.factories import make_record, make_tenant


def test_burst_is_granted_then_the_wait_is_one_refill(redis_client):
    limiter = RateLimiter(redis_client, rpm=60, burst=3, key="burst")

    grants = [limiter.acquire() for _ in range(3)]
    wait_s = limiter.acquire()

    assert grants == [0.0, 0.0, 0.0]
    assert 0.9 < wait_s <= 1.0  # 60 rpm refills one token a second


def test_two_limiters_on_one_key_share_the_bucket(redis_client):
    worker_a = RateLimiter(redis_client, rpm=60, burst=1, key="shared")
    worker_b = RateLimiter(redis_client, rpm=60, burst=1, key="shared")

    assert worker_a.acquire() == 0.0
    assert worker_b.acquire() > 0.0


def test_concurrent_acquirers_never_exceed_the_bucket(redis_client):
    # Given 600 rpm (10 a second) and a burst of 5 shared by 16 threads hammering for ~1.2 s
    rpm, burst, threads = 600, 5, 16
    limiter = RateLimiter(redis_client, rpm=rpm, burst=burst, key="concurrent")
    granted: list[float] = []
    lock, stop_at = threading.Lock(), time.monotonic() + 1.2
    started = time.monotonic()

    def worker() -> None:
        while time.monotonic() < stop_at:
            wait_s = limiter.acquire()
            if wait_s == 0.0:
                with lock:
                    granted.append(time.monotonic())
            else:
                time.sleep(min(wait_s, 0.02))

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = max(granted) - started

    # Then at most burst + rate * elapsed were granted, and the bucket was actually used
    allowed = burst + rpm / 60 * elapsed
    assert len(granted) <= allowed + 1  # +1: Redis's clock and ours tick apart
    assert len(granted) >= allowed * 0.7


def test_rpm_zero_or_no_redis_means_unlimited(redis_client):
    assert RateLimiter(redis_client, rpm=0, burst=1).acquire() == 0.0
    assert RateLimiter(None, rpm=50, burst=5).enabled is False
    assert RateLimiter(None, rpm=50, burst=5).acquire() == 0.0


def test_redis_outage_fails_open():
    import redis

    dead = redis.Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.2)
    assert RateLimiter(dead, rpm=60, burst=1).acquire() == 0.0


def limiter_env(monkeypatch, broker: str, explicit: str | None = None) -> Settings:
    """Settings read the way a worker reads them, with this broker and limiter variable."""
    for name in ("ENRICHMENT_RATELIMIT_REDIS_URL", "ENRICHMENT_AI_RPM", "ENRICHMENT_AI_BURST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CELERY_BROKER_URL", broker)
    if explicit is not None:
        monkeypatch.setenv("ENRICHMENT_RATELIMIT_REDIS_URL", explicit)
    return Settings.from_env()


def test_the_explicit_variable_wins_over_a_redis_broker(monkeypatch, redis_client):
    # Given a Redis broker nobody listens on, and the limiter's own variable on the test Redis
    settings = limiter_env(monkeypatch, "redis://127.0.0.1:9/0", explicit=REDIS_URL)
    limiter = RateLimiter.from_settings(replace(settings, ai_rpm=60, ai_burst=1), key="explicit")

    # Then the settings name the explicit Redis, and the limiter really draws on it: the
    # second token is refused (on the dead broker it would fail open and grant both)
    assert settings.ratelimit_redis_url == REDIS_URL
    assert limiter.acquire() == 0.0
    assert limiter.acquire() > 0.0
    assert redis_client.exists("enrichment:ratelimit:explicit")


def test_without_its_variable_the_limiter_uses_a_redis_broker_or_none(monkeypatch):
    assert limiter_env(monkeypatch, "redis://h:6379/3").ratelimit_redis_url == "redis://h:6379/3"
    assert limiter_env(monkeypatch, "rediss://h:6380/0").ratelimit_redis_url == "rediss://h:6380/0"
    assert limiter_env(monkeypatch, "filesystem://").ratelimit_redis_url is None
    assert limiter_env(monkeypatch, "amqp://h:5672//").ratelimit_redis_url is None
    on_rabbit = limiter_env(monkeypatch, "amqp://h:5672//", explicit="redis://r:6379/1")
    assert on_rabbit.ratelimit_redis_url == "redis://r:6379/1"
    empty = limiter_env(monkeypatch, "redis://h:6379/3", explicit="")  # empty is unset
    assert empty.ratelimit_redis_url == "redis://h:6379/3"
    assert (empty.ai_rpm, empty.ai_burst) == (50, 5)


def test_burst_defaults_to_a_tenth_of_the_rate(monkeypatch):
    monkeypatch.setenv("ENRICHMENT_AI_RPM", "600")
    monkeypatch.delenv("ENRICHMENT_AI_BURST", raising=False)
    assert Settings.from_env().ai_burst == 60
    monkeypatch.setenv("ENRICHMENT_AI_RPM", "3")
    assert Settings.from_env().ai_burst == 1


def test_one_start_up_line_names_the_redis_with_its_password_masked():
    settings = Settings(ai_provider="anthropic", ratelimit_redis_url="redis://:s3cret@r:6379/2")
    with capture_logs() as logs:
        ratelimit.log_startup(settings)

    assert logs == [
        {"event": "ratelimit.on", "log_level": "info", "redis": "redis://:***@r:6379/2",
         "rpm": 50, "burst": 5}
    ]  # fmt: skip
    assert ratelimit.masked("redis://u:p@r/0") == "redis://u:***@r/0"
    assert ratelimit.masked("redis://r:6379/0") == "redis://r:6379/0"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"ai_provider": "local"}, "the local provider calls no API"),
        ({"ai_rpm": 0}, "ENRICHMENT_AI_RPM=0"),
        ({"ratelimit_redis_url": None}, "no Redis: set ENRICHMENT_RATELIMIT_REDIS_URL"),
    ],
)
def test_the_start_up_line_says_why_the_limiter_is_off(changes, reason):
    on = {"ai_provider": "anthropic", "ratelimit_redis_url": "redis://r:6379/2"}
    with capture_logs() as logs:
        ratelimit.log_startup(Settings(**{**on, **changes}))

    assert [(log["event"], log["reason"]) for log in logs] == [("ratelimit.off", reason)]


@pytest.mark.parametrize(("rpm", "burst"), [("x", "1"), ("10", "11"), ("-1", "1")])
def test_bad_limiter_settings_fail_at_start_up(monkeypatch, rpm, burst):
    monkeypatch.setenv("ENRICHMENT_AI_RPM", rpm)
    monkeypatch.setenv("ENRICHMENT_AI_BURST", burst)
    with pytest.raises(ConfigurationError):
        Settings.from_env()


# Each tenant's share: deterministic, on a clock the test passes in (now_s).

RPM, BURST, STEP_S = 600, 2, 0.01  # 10 tokens a second, asked for every 10 ms


def _ask_in_turn(limiter, weights: dict[str, float], *, start_s: float, seconds: float):
    """Every tenant in `weights` asks once per step, in turn; grants counted per tenant."""
    granted = dict.fromkeys(weights, 0)
    for step in range(round(seconds / STEP_S)):
        for tenant, weight in weights.items():
            if limiter.acquire(tenant, weight, now_s=start_s + step * STEP_S) == 0.0:
                granted[tenant] += 1
    return granted


def test_two_tenants_of_equal_weight_split_the_rate(redis_client):
    limiter = RateLimiter(redis_client, rpm=RPM, burst=BURST, key="fair")

    granted = _ask_in_turn(limiter, {"acme": 1, "globex": 1}, start_s=1000.0, seconds=10)

    # 10 s at 10 a second, plus the burst, shared half and half
    assert sum(granted.values()) <= BURST + 100 + 1
    assert 48 <= granted["acme"] <= 53 and 48 <= granted["globex"] <= 53


def test_weights_three_to_one_split_three_to_one(redis_client):
    limiter = RateLimiter(redis_client, rpm=RPM, burst=BURST, key="weighted")

    granted = _ask_in_turn(limiter, {"acme": 3, "globex": 1}, start_s=1000.0, seconds=10)

    assert sum(granted.values()) <= BURST + 100 + 1
    assert 73 <= granted["acme"] <= 78 and 24 <= granted["globex"] <= 27


def test_a_lone_tenant_gets_the_whole_rate(redis_client):
    limiter = RateLimiter(redis_client, rpm=RPM, burst=BURST, key="alone")

    granted = _ask_in_turn(limiter, {"acme": 1}, start_s=1000.0, seconds=10)

    assert BURST + 99 <= granted["acme"] <= BURST + 101


def test_a_tenant_that_stops_asking_leaves_its_share_after_the_window(redis_client):
    limiter = RateLimiter(redis_client, rpm=RPM, burst=BURST, key="dropout", active_window_s=5)
    both = _ask_in_turn(limiter, {"acme": 1, "globex": 1}, start_s=1000.0, seconds=5)

    # When globex stops, acme is still held to half while globex's window runs
    within = _ask_in_turn(limiter, {"acme": 1}, start_s=1005.0, seconds=4)
    after = _ask_in_turn(limiter, {"acme": 1}, start_s=1011.0, seconds=4)

    assert 23 <= both["globex"] <= 27
    assert within["acme"] <= 4 * 5 + 2  # half of 10 a second, plus its own small burst
    assert after["acme"] >= 4 * 10 - 1  # then the whole rate


def test_a_refused_tenant_is_not_charged(redis_client):
    # Given acme took the only fleet token
    limiter = RateLimiter(redis_client, rpm=60, burst=1, key="refused")
    assert limiter.acquire("acme", now_s=1000.0) == 0.0

    # When globex is refused by the empty fleet bucket, then asks once it has refilled
    refused = limiter.acquire("globex", now_s=1000.5)
    later = limiter.acquire("globex", now_s=1001.0)

    assert refused == 0.5
    assert later == 0.0  # its own token was still there: the refusal did not spend it


def test_weights_that_are_not_positive_numbers_count_as_one(redis_client):
    limiter = RateLimiter(redis_client, rpm=RPM, burst=BURST, key="badweight")

    granted = _ask_in_turn(
        limiter, {"acme": float("nan"), "globex": -2.0}, start_s=1000.0, seconds=10
    )

    assert 48 <= granted["acme"] <= 53 and 48 <= granted["globex"] <= 53


def test_tenant_buckets_use_the_redis_clock_by_default(redis_client):
    limiter = RateLimiter(redis_client, rpm=60, burst=2, key="clock")

    grants = [limiter.acquire("acme", 2.0) for _ in range(2)]
    wait_s = limiter.acquire("acme", 2.0)

    assert grants == [0.0, 0.0]
    assert 0.9 < wait_s <= 1.0


def test_a_tenant_and_the_fleet_only_path_share_one_bucket(redis_client):
    limiter = RateLimiter(redis_client, rpm=60, burst=1, key="mixed")

    assert limiter.acquire() == 0.0  # e.g. a caller without a tenant
    assert limiter.acquire("acme") > 0.0


@pytest.mark.parametrize(
    ("settings", "weight"),
    [
        (None, 1.0),
        ({}, 1.0),
        ({"weight": 3}, 3.0),
        ({"weight": 0.5}, 0.5),
        ({"weight": 0}, 1.0),
        ({"weight": -2}, 1.0),
        ({"weight": "3"}, 3.0),  # a numeric string, as in the sweep's share
        ({"weight": True}, 1.0),
        ({"weight": float("nan")}, 1.0),
        ({"weight": float("inf")}, 1.0),
    ],
)
def test_tenant_weight_comes_from_the_tenant_settings(settings, weight):
    assert TenantSettings.parse(settings).weight == weight


def test_the_stage_input_carries_the_tenant_weight(factory, settings):
    # Given a tenant of weight 3 with a leased record
    with factory.begin() as session:
        tenant = make_tenant(session, settings={"weight": 3})
        record_id = make_record(session, tenant, lease_token="lease-1").id

    # When the classification stage begins
    with db.get_engine(settings.database_url).begin() as conn:
        _, ctx = begin_stage(conn, settings, "classification", record_id, "lease-1")

    # Then the provider sees the weight it passes to the limiter
    assert ctx.tenant == "demo-3pl" and ctx.weight == 3.0
