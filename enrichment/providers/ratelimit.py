"""A fleet-wide token bucket in Redis, shared out between the active tenants by weight.

Why a token bucket with a small burst: the provider enforces its requests-per-minute limit as
a continuously refilled bucket (60 RPM may be enforced as 1 request per second). A bucket with
the same refill rate and a capacity no larger than the provider's never sends a request the
provider's bucket would refuse, however many workers share it.

Why per-tenant buckets on top: without them one tenant with a deep backlog takes every token
and the others wait behind it. A tenant's request needs a token from the fleet bucket AND one
from its own bucket, which refills at rate × w / Σw over the *active* tenants (tenants.settings
["weight"], default 1). A tenant is active while it keeps asking: for `active_window_s` after
each ask, plus any wait it was told to sit out. The shares of the active tenants add up to the
fleet rate, so a lone tenant gets the whole rate and a tenant that stops asking hands its share
to the others once its window has passed.

All state lives in Redis and is updated by one Lua script per take (one round trip), so
concurrent acquirers cannot both take the last token. The script reads Redis's own clock
(TIME), so workers with skewed clocks still agree; tests may pass their own clock instead.
"""

from __future__ import annotations

import math
from urllib.parse import urlsplit, urlunsplit

import redis
import structlog

from enrichment.core.settings import Settings

log = structlog.get_logger(__name__)

# KEYS: fleet bucket (hash), active tenants (zset tenant -> active until, in s), weights
# (hash tenant -> weight), this tenant's bucket (hash; unused without a tenant).
# ARGV: rate per s, burst, now in s ('' = Redis's clock), tenant ('' = fleet bucket only),
# weight, active window in s.
# Returns 0 when a token was taken, else the milliseconds until one will be available.
_TAKE_TOKEN_LUA = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if not now then
  local clock = redis.call('TIME')
  now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
end
local tenant, weight, window = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])

local function level(key, fill_rate, capacity)
  local state = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(state[1]) or capacity
  local ts = tonumber(state[2]) or now
  return math.min(capacity, tokens + math.max(0, now - ts) * fill_rate)
end

local function save(key, tokens, fill_rate, capacity)
  redis.call('HSET', key, 'tokens', string.format('%.6f', tokens),
             'ts', string.format('%.6f', now))
  redis.call('PEXPIRE', key, math.ceil(capacity / fill_rate * 1000) + 1000)
end

local function wait_for(tokens, fill_rate)
  if tokens >= 1 then return 0 end
  return (1 - tokens) / fill_rate
end

-- This tenant's weight over the weights of the tenants still active (itself included).
local function share()
  local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', string.format('(%.6f', now))
  if #gone > 0 then
    redis.call('ZREM', KEYS[2], unpack(gone))
    redis.call('HDEL', KEYS[3], unpack(gone))
  end
  redis.call('HSET', KEYS[3], tenant, weight)
  local active = redis.call('ZRANGE', KEYS[2], 0, -1)
  local total = weight
  if #active > 0 then
    local weights = redis.call('HMGET', KEYS[3], unpack(active))
    for i, name in ipairs(active) do
      if name ~= tenant then total = total + (tonumber(weights[i]) or 1) end
    end
  end
  return weight / total
end

-- Active until the window after this ask, or after the wait it was told, whichever is later.
local function mark_active(wait_s)
  local active_until = now + window + wait_s
  local held = tonumber(redis.call('ZSCORE', KEYS[2], tenant))
  if held and held > active_until then active_until = held end
  redis.call('ZADD', KEYS[2], string.format('%.6f', active_until), tenant)
  local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  local ttl_ms = math.ceil((tonumber(last[2]) - now) * 1000) + 1000
  redis.call('PEXPIRE', KEYS[2], ttl_ms)
  redis.call('PEXPIRE', KEYS[3], ttl_ms)
end

local fleet = level(KEYS[1], rate, burst)
local wait_s = wait_for(fleet, rate)
if tenant == '' then
  if wait_s == 0 then fleet = fleet - 1 end
  save(KEYS[1], fleet, rate, burst)
  return math.ceil(wait_s * 1000)
end
local part = share()
local own_rate, own_capacity = rate * part, math.max(1, burst * part)
local own = level(KEYS[4], own_rate, own_capacity)
wait_s = math.max(wait_s, wait_for(own, own_rate))
if wait_s == 0 then
  fleet, own = fleet - 1, own - 1
end
save(KEYS[1], fleet, rate, burst)
save(KEYS[4], own, own_rate, own_capacity)
mark_active(wait_s)
return math.ceil(wait_s * 1000)
"""


def masked(url: str) -> str:
    """The URL with its password, if any, replaced by ***: safe to log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def log_startup(settings: Settings) -> None:
    """One line at start-up: the Redis the rate limiter uses (password masked), or why it is
    off."""
    if settings.ai_provider != "anthropic":
        log.info("ratelimit.off", reason=f"the {settings.ai_provider} provider calls no API")
    elif settings.ai_rpm <= 0:
        log.info("ratelimit.off", reason="ENRICHMENT_AI_RPM=0")
    elif settings.ratelimit_redis_url is None:
        log.warning("ratelimit.off", reason="no Redis: set ENRICHMENT_RATELIMIT_REDIS_URL")
    else:
        redis_url = masked(settings.ratelimit_redis_url)
        log.info("ratelimit.on", redis=redis_url, rpm=settings.ai_rpm, burst=settings.ai_burst)


class RateLimiter:
    """Requests-per-minute limit shared by every process that uses the same Redis and key,
    split between the active tenants by weight.

    active_window_s (default 10 s): how long a tenant that stopped asking keeps its share.
    """

    def __init__(
        self,
        client: redis.Redis | None,
        *,
        rpm: int,
        burst: int,
        key: str = "anthropic",
        active_window_s: float = 10.0,
    ) -> None:
        self._client = client if rpm > 0 else None
        self._rate_per_s = rpm / 60.0
        self._burst = burst
        self._key = f"enrichment:ratelimit:{key}"
        self._active_window_s = active_window_s
        self._script = self._client.register_script(_TAKE_TOKEN_LUA) if self._client else None

    @classmethod
    def from_settings(cls, settings: Settings, *, key: str = "anthropic") -> RateLimiter:
        """A limiter on settings.ratelimit_redis_url; off without one or at ENRICHMENT_AI_RPM=0."""
        url = settings.ratelimit_redis_url
        # from_url does not connect: the first acquire() does, after the worker has forked.
        client = redis.Redis.from_url(url) if url else None
        return cls(client, rpm=settings.ai_rpm, burst=settings.ai_burst, key=key)

    @property
    def enabled(self) -> bool:
        return self._script is not None

    def acquire(
        self, tenant: str | None = None, weight: float = 1.0, *, now_s: float | None = None
    ) -> float:
        """Take one token: 0.0 when granted, else the seconds to wait before asking again.

        tenant: a validated tenant name (safe as a Redis key part); None draws on the fleet
        bucket alone. weight: the tenant's weight; not a positive finite number counts as 1.
        now_s: a clock in seconds for tests; None uses Redis's clock.
        """
        if self._script is None:
            return 0.0
        try:
            wait_ms = int(
                self._script(keys=self._keys(tenant), args=self._args(tenant, weight, now_s))
            )
        except redis.RedisError as exc:
            # Fail open: the provider's own 429s and the SDK's retries still protect the
            # account, and a Redis outage also stops the broker, so little work flows anyway.
            log.warning("ratelimit.redis_unavailable", error=type(exc).__name__)
            return 0.0
        return wait_ms / 1000.0

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def _keys(self, tenant: str | None) -> list[str]:
        own = f"{self._key}:tenant:{tenant}" if tenant else f"{self._key}:tenant"
        return [self._key, f"{self._key}:active", f"{self._key}:weights", own]

    def _args(self, tenant: str | None, weight: float, now_s: float | None) -> list[object]:
        weight = weight if math.isfinite(weight) and weight > 0 else 1.0
        now = "" if now_s is None else repr(float(now_s))
        return [
            self._rate_per_s,
            self._burst,
            now,
            tenant or "",
            repr(weight),
            self._active_window_s,
        ]
