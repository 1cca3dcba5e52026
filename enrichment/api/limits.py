"""Per-tenant API limits: requests per minute and requests in flight, shared by every API
process through the rate limiter's Redis (ENRICHMENT_RATELIMIT_REDIS_URL, else a Redis
broker). Over either limit the answer is 429 with Retry-After (issue 22: one bursty tenant
took the API down for every other).

- Rate: the AI rate limiter's token bucket (providers/ratelimit.py, one Lua script), on a key
  of the tenant's own: ENRICHMENT_API_RPM refill, ENRICHMENT_API_BURST capacity.
- Concurrency: a sorted set per tenant, one member per request in flight, scored by when its
  slot lapses (SLOT_TTL_S after it was taken). A process killed mid-request cannot leak its
  slots for longer than that.

Both are checked after the key (the tenant is known); a tenant's own `api_rpm`, `api_burst`
and `api_concurrency` settings override the defaults. With no Redis the limits are off (said
once at start-up). A Redis error lets the request through with a logged warning: the API must
not go down with Redis.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis
import structlog
from fastapi import HTTPException, status

from enrichment.core.settings import Settings
from enrichment.core.tenant_settings import TenantSettings
from enrichment.providers.ratelimit import RateLimiter, masked

log = structlog.get_logger(__name__)

# A request holding its slot longer than this gives it back; API requests take well under it.
SLOT_TTL_S = 60.0
# A Redis that hangs must not hang every request: fail open after this.
REDIS_TIMEOUT_S = 0.5
KEY_PREFIX = "enrichment:api"

# KEYS: the tenant's in-flight set. ARGV: cap, slot lease in s, this request's slot id.
# Returns 1 when the slot was taken, 0 at the cap. Lapsed slots are dropped first.
_TAKE_SLOT_LUA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.6f', now))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], string.format('%.6f', now + ttl), ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 1000))
return 1
"""


@dataclass(frozen=True)
class Limits:
    """One tenant's API limits. rpm, concurrency: 0 is unlimited; burst >= 1."""

    rpm: int
    burst: int
    concurrency: int

    @classmethod
    def of(cls, settings: Settings, own: TenantSettings) -> Limits:
        """The fleet defaults, overridden by the tenant's own settings where it has them."""
        return cls(
            rpm=settings.api_rpm if own.api_rpm is None else own.api_rpm,
            burst=settings.api_burst if own.api_burst is None else own.api_burst,
            concurrency=(
                settings.api_concurrency if own.api_concurrency is None else own.api_concurrency
            ),
        )


def too_many(detail: str, retry_after_s: float) -> HTTPException:
    seconds = max(1, math.ceil(retry_after_s))
    return HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS, detail, headers={"Retry-After": str(seconds)}
    )


class ApiLimiter:
    """The limits of every tenant, on one Redis client (None: off)."""

    def __init__(self, client: redis.Redis | None) -> None:
        self._client = client
        self._take_slot = client.register_script(_TAKE_SLOT_LUA) if client else None
        self._buckets: dict[tuple[str, int, int], RateLimiter] = {}

    @property
    def enabled(self) -> bool:
        return self._client is not None

    @contextmanager
    def admitted(self, tenant: str, limits: Limits) -> Iterator[None]:
        """Hold a slot and take a token for one request of `tenant` (a validated name), or
        raise a 429. The slot is given back when the block ends."""
        slot = self._enter(tenant, limits)
        try:
            yield
        finally:
            if slot is not None:
                self._leave(tenant, slot)

    def _enter(self, tenant: str, limits: Limits) -> str | None:
        if self._client is None:
            return None
        slot = self._slot(tenant, limits.concurrency)
        wait_s = self._bucket(tenant, limits).acquire() if limits.rpm > 0 else 0.0
        if wait_s > 0:
            if slot is not None:
                self._leave(tenant, slot)
            raise too_many(f"over {limits.rpm} requests per minute for this tenant", wait_s)
        return slot

    def _slot(self, tenant: str, cap: int) -> str | None:
        if cap <= 0:
            return None
        slot = uuid.uuid4().hex
        try:
            taken = self._take_slot(keys=[self._inflight(tenant)], args=[cap, SLOT_TTL_S, slot])
        except redis.RedisError as exc:
            log.warning("api_limits.redis_unavailable", error=type(exc).__name__, tenant=tenant)
            return None
        if not taken:
            raise too_many(f"over {cap} requests in flight for this tenant", 1.0)
        return slot

    def _leave(self, tenant: str, slot: str) -> None:
        try:
            self._client.zrem(self._inflight(tenant), slot)
        except redis.RedisError as exc:
            # The slot lapses by itself after SLOT_TTL_S.
            log.warning("api_limits.redis_unavailable", error=type(exc).__name__, tenant=tenant)

    def _bucket(self, tenant: str, limits: Limits) -> RateLimiter:
        key = (tenant, limits.rpm, limits.burst)
        if key not in self._buckets:
            if len(self._buckets) > 4096:  # overrides changed many times: start over
                self._buckets.clear()
            self._buckets[key] = RateLimiter(
                self._client, rpm=limits.rpm, burst=limits.burst, key=f"api:{tenant}"
            )
        return self._buckets[key]

    @staticmethod
    def _inflight(tenant: str) -> str:
        return f"{KEY_PREFIX}:inflight:{tenant}"


_limiters: dict[str | None, ApiLimiter] = {}


def limiter(settings: Settings) -> ApiLimiter:
    """This process's limiter on settings' Redis, made on first use (it connects lazily)."""
    url = settings.ratelimit_redis_url
    if url not in _limiters:
        client = None
        if url:
            client = redis.Redis.from_url(
                url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
            )
        _limiters[url] = ApiLimiter(client)
    return _limiters[url]


def announce(settings: Settings) -> None:
    """One line at start-up: the API limits and their Redis (password masked), or why off."""
    url = settings.ratelimit_redis_url
    if url is None:
        log.warning("api_limits.off", reason="no Redis: set ENRICHMENT_RATELIMIT_REDIS_URL")
        return
    log.info(
        "api_limits.on",
        redis=masked(url),
        rpm=settings.api_rpm,
        burst=settings.api_burst,
        concurrency=settings.api_concurrency,
    )
