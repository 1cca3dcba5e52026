"""A fleet-wide token bucket in Redis: every worker process draws from the same bucket.

Why a token bucket with a small burst: the provider enforces its requests-per-minute limit as
a continuously refilled bucket (60 RPM may be enforced as 1 request per second). A bucket with
the same refill rate and a capacity no larger than the provider's never sends a request the
provider's bucket would refuse, however many workers share it.

The state (tokens left, last refill time) lives in one Redis hash and is updated by one Lua
script, so concurrent acquirers cannot both take the last token. The script reads Redis's own
clock (TIME), so workers with skewed clocks still agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
import structlog

from enrichment.core.settings import Settings

log = structlog.get_logger(__name__)

# Returns 0 when a token was taken, else the milliseconds until one will be available.
_TAKE_TOKEN_LUA = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local wait_ms = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait_ms = math.ceil((1 - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens),
           'ts', string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
return wait_ms
"""


@dataclass(frozen=True)
class RateLimitConfig:
    """The limiter's part of Settings.

    rpm: requests per minute for the whole fleet (0 = unlimited); burst: bucket size;
    redis_url: the broker when it is redis:// or rediss://, else ENRICHMENT_RATELIMIT_REDIS_URL;
    None turns the limiter off (embedded demo).
    """

    rpm: int = 50
    burst: int = 5
    redis_url: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimitConfig:
        redis_url = settings.ratelimit_redis_url
        if settings.broker_url.startswith(("redis://", "rediss://")):
            redis_url = settings.broker_url
        return cls(rpm=settings.ai_rpm, burst=settings.ai_burst, redis_url=redis_url)


class RateLimiter:
    """Requests-per-minute limit shared by every process that uses the same Redis and key."""

    def __init__(
        self, client: redis.Redis | None, *, rpm: int, burst: int, key: str = "anthropic"
    ) -> None:
        self._client = client if rpm > 0 else None
        self._rate_per_s = rpm / 60.0
        self._burst = burst
        self._key = f"enrichment:ratelimit:{key}"
        self._script = self._client.register_script(_TAKE_TOKEN_LUA) if self._client else None

    @classmethod
    def from_settings(cls, settings: Settings, *, key: str = "anthropic") -> RateLimiter:
        """A limiter on the fleet's Redis; off when there is no Redis or ENRICHMENT_AI_RPM=0."""
        config = RateLimitConfig.from_settings(settings)
        # from_url does not connect: the first acquire() does, after the worker has forked.
        client = redis.Redis.from_url(config.redis_url) if config.redis_url else None
        return cls(client, rpm=config.rpm, burst=config.burst, key=key)

    @property
    def enabled(self) -> bool:
        return self._script is not None

    def acquire(self) -> float:
        """Take one token: 0.0 when granted, else the seconds to wait before asking again."""
        if self._script is None:
            return 0.0
        try:
            wait_ms = int(self._script(keys=[self._key], args=[self._rate_per_s, self._burst]))
        except redis.RedisError as exc:
            # Fail open: the provider's own 429s and the SDK's retries still protect the
            # account, and a Redis outage also stops the broker, so little work flows anyway.
            log.warning("ratelimit.redis_unavailable", error=type(exc).__name__)
            return 0.0
        return wait_ms / 1000.0

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
