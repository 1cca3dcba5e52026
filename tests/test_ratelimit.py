"""The fleet-wide token bucket, on real Redis: shared, atomic, and off when configured off."""

from __future__ import annotations

import threading
import time

import pytest

from enrichment.core.settings import ConfigurationError, Settings
from enrichment.providers.ratelimit import RateLimitConfig, RateLimiter


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


def test_config_takes_redis_from_the_broker_or_its_own_variable(monkeypatch):
    monkeypatch.delenv("ENRICHMENT_RATELIMIT_REDIS_URL", raising=False)
    monkeypatch.delenv("ENRICHMENT_AI_RPM", raising=False)
    monkeypatch.delenv("ENRICHMENT_AI_BURST", raising=False)
    redis_broker = Settings(broker_url="redis://127.0.0.1:6379/3")
    embedded = Settings(broker_url="filesystem://")

    assert RateLimitConfig.from_settings(redis_broker).redis_url == "redis://127.0.0.1:6379/3"
    assert RateLimitConfig.from_settings(embedded).redis_url is None
    assert RateLimitConfig.from_settings(embedded) == RateLimitConfig(rpm=50, burst=5)
    monkeypatch.setenv("ENRICHMENT_RATELIMIT_REDIS_URL", "redis://other:6379/1")
    monkeypatch.setenv("CELERY_BROKER_URL", "filesystem://")
    assert RateLimitConfig.from_settings(Settings.from_env()).redis_url == "redis://other:6379/1"


@pytest.mark.parametrize(("rpm", "burst"), [("x", "1"), ("10", "11"), ("-1", "1")])
def test_bad_limiter_settings_fail_at_start_up(monkeypatch, rpm, burst):
    monkeypatch.setenv("ENRICHMENT_AI_RPM", rpm)
    monkeypatch.setenv("ENRICHMENT_AI_BURST", burst)
    with pytest.raises(ConfigurationError):
        Settings.from_env()
