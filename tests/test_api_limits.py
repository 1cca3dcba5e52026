"""Per-tenant API limits (issue 22: one bursty tenant took the API down for every other):
a requests-per-minute bucket and a cap on requests in flight, shared through Redis, answered
with 429 and Retry-After; per-tenant overrides; Redis down lets requests through.

The buckets refill at 1 request per minute here, so within a test no token comes back and
every count of 200s and 429s is exact, whatever the timing.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import pytest
import redis
import structlog
from fastapi.testclient import TestClient
from sqlalchemy import text

from enrichment.api import app, deps, limits
from enrichment.core import db, tenants
from enrichment.core.tenant_settings import TenantSettings, TenantSettingsError
from enrichment.tooling.redis_server import RedisServer, free_port
from tests.conftest import REDIS_URL, with_settings

HEALTH = "/api/enrichment/health/{}"


@pytest.fixture
def api(settings, factory, redis_client):
    """Start the API on `settings` changed by `changes`; gives a client and each tenant's
    auth header."""

    def start(tenant_settings: dict[str, dict] | None = None, **changes):
        changes.setdefault("ratelimit_redis_url", REDIS_URL)
        limited = with_settings(settings, **changes)
        auth = {}
        with factory.begin() as s:
            for name, own in (tenant_settings or {"a-3pl": {}, "b-3pl": {}}).items():
                row, key = tenants.create_tenant(s, name)
                row.settings = own
                auth[name] = {"Authorization": f"Bearer {key}"}
        app.dependency_overrides[deps.app_settings] = lambda: limited
        return TestClient(app), auth

    yield start
    app.dependency_overrides.clear()


def get_all(client, requests: list[tuple[str, dict]]) -> list:
    """The requests (path, headers) sent at once, from as many threads."""
    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(lambda r: client.get(r[0], headers=r[1]), requests))


def wait_until(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def assert_429(r, says: str) -> None:
    assert r.status_code == 429, r.text
    assert int(r.headers["Retry-After"]) >= 1
    assert says in r.json()["detail"]


def test_a_flooding_tenant_gets_429s_while_another_tenants_requests_all_succeed(api):
    # given a burst of 5 and (almost) no refill
    client, auth = api(api_rpm=1, api_burst=5, api_concurrency=0)
    flood = [(HEALTH.format("a-3pl"), auth["a-3pl"])] * 12
    quiet = [(HEALTH.format("b-3pl"), auth["b-3pl"])] * 5
    # when a-3pl sends 12 at once while b-3pl sends its 5
    answers = get_all(client, flood + quiet)
    flooded, quieted = answers[:12], answers[12:]
    # then a-3pl gets exactly its burst, the rest 429 with Retry-After; b-3pl all succeed
    assert sorted(r.status_code for r in flooded) == [200] * 5 + [429] * 7
    for r in flooded:
        if r.status_code == 429:
            assert_429(r, "over 1 requests per minute")
            assert int(r.headers["Retry-After"]) <= 60
    assert [r.status_code for r in quieted] == [200] * 5


def test_a_tenant_override_raises_its_own_limit_only(api):
    client, auth = api({"a-3pl": {"api_burst": 8}, "b-3pl": {}}, api_rpm=1, api_burst=2)
    for name, allowed in (("a-3pl", 8), ("b-3pl", 2)):
        codes = [client.get(HEALTH.format(name), headers=auth[name]).status_code for _ in range(10)]
        assert codes == [200] * allowed + [429] * (10 - allowed), name


def test_an_override_of_zero_lifts_the_limit(api):
    client, auth = api({"a-3pl": {"api_rpm": 0}}, api_rpm=1, api_burst=1)
    a = (HEALTH.format("a-3pl"), auth["a-3pl"])
    assert [client.get(a[0], headers=a[1]).status_code for _ in range(5)] == [200] * 5


def test_overrides_are_validated():
    assert TenantSettings.validate({"api_rpm": "120", "api_concurrency": 4}).api_rpm == 120
    for bad in ({"api_rpm": -1}, {"api_burst": 0}, {"api_concurrency": 2.5}):
        with pytest.raises(TenantSettingsError, match=next(iter(bad))):
            TenantSettings.validate(bad)


def test_the_request_over_the_concurrency_cap_gets_429_and_slots_come_back(
    api, factory, redis_client
):
    client, auth = api(api_rpm=0, api_concurrency=2)
    a = (HEALTH.format("a-3pl"), auth["a-3pl"])
    inflight = f"{limits.KEY_PREFIX}:inflight:a-3pl"
    engine = db.get_engine(str(factory().get_bind().url))
    with ThreadPoolExecutor(3) as pool:
        # given two requests held open on a lock the health route waits for
        with engine.connect() as lock:
            lock.execute(text("LOCK TABLE exception_records IN ACCESS EXCLUSIVE MODE"))
            held = [pool.submit(client.get, a[0], headers=a[1]) for _ in range(2)]
            wait_until(lambda: redis_client.zcard(inflight) == 2)
            # when a third comes, then it is refused at once (were it let in, it would wait
            # on the lock: the bounded wait fails the test and releases the lock, no hang)
            third = pool.submit(client.get, a[0], headers=a[1])
            assert_429(third.result(timeout=10), "over 2 requests in flight")
            lock.rollback()
        assert [f.result(timeout=30).status_code for f in held] == [200, 200]
    # then the slots are given back when the requests end
    assert redis_client.zcard(inflight) == 0
    assert client.get(a[0], headers=a[1]).status_code == 200


def test_redis_down_lets_requests_through_with_a_warning(api, tmp_path):
    server = RedisServer(free_port(), tmp_path)
    server.start()
    try:
        url = f"redis://127.0.0.1:{server.port}/0"
        client, auth = api(ratelimit_redis_url=url, api_rpm=1, api_burst=1)
        a = (HEALTH.format("a-3pl"), auth["a-3pl"])
        assert [client.get(a[0], headers=a[1]).status_code for _ in range(2)] == [200, 429]
        server.stop()
        with structlog.testing.capture_logs() as logs:
            codes = [client.get(a[0], headers=a[1]).status_code for _ in range(3)]
    finally:
        server.stop()
    assert codes == [200] * 3
    warned = [e for e in logs if e["event"] == "api_limits.redis_unavailable"]
    assert warned and warned[0]["log_level"] == "warning"


def test_without_redis_the_limits_are_off_and_start_up_says_so(api, settings):
    client, auth = api(ratelimit_redis_url=None, api_rpm=1, api_burst=1, api_concurrency=1)
    a = (HEALTH.format("a-3pl"), auth["a-3pl"])
    assert [client.get(a[0], headers=a[1]).status_code for _ in range(3)] == [200] * 3
    with structlog.testing.capture_logs() as logs:
        limits.announce(with_settings(settings, ratelimit_redis_url=None))
    assert [(e["event"], e["log_level"]) for e in logs] == [("api_limits.off", "warning")]


def test_two_processes_on_one_redis_share_one_bucket_and_one_cap(redis_client):
    # given two limiters, each with its own client, as two API processes have
    first, second = (limits.ApiLimiter(redis.Redis.from_url(REDIS_URL)) for _ in range(2))
    rate = limits.Limits(rpm=1, burst=3, concurrency=0)
    with ExitStack() as held:
        for limiter in (first, second, first):
            held.enter_context(limiter.admitted("a-3pl", rate))
        # then the fourth, from either, finds the shared bucket empty
        for limiter in (first, second):
            with pytest.raises(Exception) as refused, limiter.admitted("a-3pl", rate):
                pass
            assert refused.value.status_code == 429
    cap = limits.Limits(rpm=0, burst=1, concurrency=2)
    with first.admitted("b-3pl", cap):
        with second.admitted("b-3pl", cap):
            with pytest.raises(Exception) as refused, first.admitted("b-3pl", cap):
                pass
            assert refused.value.status_code == 429
        with second.admitted("b-3pl", cap):  # a slot given back is free to either
            pass
