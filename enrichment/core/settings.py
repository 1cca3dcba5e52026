"""One settings object, read from the environment once per process.

Each field states its default, variable, bounds and meaning once (settings_env.setting);
its sections are in settings_sections.py, and docs/configuration.md is generated from them
all (`make config-docs`). Every duration is in seconds (`_s`). Wrong values fail at
start-up with a hint.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from enrichment.core import experiments, outbound
from enrichment.core.settings_env import ConfigurationError, FromEnv, read_fields, section, setting
from enrichment.core.settings_retention import ARCHIVE, RetentionConfig
from enrichment.core.settings_sections import (
    AlertPolicy,
    BatchConfig,
    BreakerConfig,
    MonitorConfig,
    PagerDutyConfig,
    RecordLimits,
    ReviewConfig,
    RoutingConfig,
    SlackConfig,
    WebhookConfig,
)

__all__ = [
    "AlertPolicy",
    "BatchConfig",
    "BreakerConfig",
    "ConfigurationError",
    "MonitorConfig",
    "PagerDutyConfig",
    "RecordLimits",
    "RetentionConfig",
    "ReviewConfig",
    "RoutingConfig",
    "Settings",
    "SlackConfig",
    "WebhookConfig",
    "get_settings",
]

VAR_DIR = Path(os.environ.get("ENRICHMENT_VAR_DIR", "var")).resolve()


def default_database_url() -> str:
    return f"sqlite:///{VAR_DIR / 'enrichment.db'}"


def default_broker_url() -> str:
    return "filesystem://"


# RabbitMQ closes a consumer's channel, and requeues all it holds, when one delivery stays
# unacknowledged past its `consumer_timeout` (30 min by default). The fleet acks late, and a
# countdown message is held from its enqueue: up to the sweep horizon, then its run.
AMQP_CONSUMER_TIMEOUT_S = 1800.0
# Room for a due message to wait for a free pool slot, and for clock skew.
AMQP_HOLD_MARGIN_S = 300.0


DATABASE_SCHEMES = ("postgresql+psycopg://", "sqlite:")
DATABASE_HINT = "use postgresql+psycopg://user@host:5432/db (or sqlite:///path, the demo's)"


def check_database_url(url: str) -> None:
    """PostgreSQL through psycopg 3, or SQLite; anything else is refused with the spelling
    (the scheme only: the URL may hold a password)."""
    if url.startswith(DATABASE_SCHEMES):
        return
    if "://" not in url:
        raise ConfigurationError(f"DATABASE_URL could not be parsed: {DATABASE_HINT}")
    scheme = url.split("://", 1)[0]
    raise ConfigurationError(f"DATABASE_URL {scheme}://… is not supported: {DATABASE_HINT}")


def is_amqp(broker_url: str) -> bool:
    return broker_url.startswith(("amqp://", "amqps://", "pyamqp://"))


def task_time_limit_s(ai_timeout_s: float) -> int:
    """The hard limit on one task run (prefork kills the child): six AI timeouts, >= 90 s."""
    return max(90, int(ai_timeout_s * 6))


def check_amqp_hold(broker_url: str, horizon_s: float, ai_timeout_s: float) -> None:
    """On RabbitMQ the longest hold, horizon + a run + margin, must stay below consumer_timeout."""
    run_s = task_time_limit_s(ai_timeout_s)
    most_s = AMQP_CONSUMER_TIMEOUT_S - AMQP_HOLD_MARGIN_S - run_s
    if not is_amqp(broker_url) or horizon_s < most_s:
        return
    fix = f"set it below {most_s:g}" if most_s > 0 else "lower ENRICHMENT_AI_TIMEOUT_S"
    raise ConfigurationError(
        f"ENRICHMENT_SWEEP_HORIZON_S={horizon_s:g} is too long for RabbitMQ: a countdown is held"
        f" unacknowledged for the horizon plus a run ({run_s} s, from ENRICHMENT_AI_TIMEOUT_S)"
        f" plus {AMQP_HOLD_MARGIN_S:g} s, which must stay below its consumer_timeout"
        f" ({AMQP_CONSUMER_TIMEOUT_S:g} s); {fix}"
    )


def is_redis(url: str) -> bool:
    return url.startswith(("redis://", "rediss://"))


def _provider_default(values: Mapping[str, Any]) -> str:
    return "anthropic" if values["anthropic_api_key"] else "local"


def _burst_default(values: Mapping[str, Any]) -> int:
    return max(1, values["ai_rpm"] // 10)


def _ratelimit_redis_default(values: Mapping[str, Any]) -> str | None:
    """The broker when it is Redis; an explicit ENRICHMENT_RATELIMIT_REDIS_URL wins."""
    return values["broker_url"] if is_redis(values["broker_url"]) else None


@dataclass(frozen=True)
class Settings(FromEnv):
    """The fleet's own settings: database, broker, AI provider, retries, the sweep, the AI
    rate limit and logs; then one section per concern."""

    database_url: str = setting(
        "DATABASE_URL",
        None,
        "PostgreSQL in production: `postgresql+psycopg://user@host/db`",
        factory=default_database_url,
        shown="`sqlite:///./var/enrichment.db` (under ENRICHMENT_VAR_DIR)",
    )
    broker_url: str = setting(
        "CELERY_BROKER_URL",
        None,
        "Redis in production: `redis://host:6379/0`, or RabbitMQ:"
        " `amqp://user:password@host:5672/vhost`",
        factory=default_broker_url,
        shown="`filesystem://` (under ENRICHMENT_VAR_DIR)",
    )
    ai_provider: str = setting(
        "ENRICHMENT_AI_PROVIDER",
        "local",
        "which AI enriches the records",
        choices=("local", "anthropic"),
        derive=_provider_default,
        shown="`anthropic` if ANTHROPIC_API_KEY is set, else `local`",
    )
    anthropic_api_key: str | None = setting(
        "ANTHROPIC_API_KEY", None, "the Anthropic key (never logged)"
    )
    backoff_scale: float = setting(
        "ENRICHMENT_BACKOFF_SCALE",
        1.0,
        "multiplies the 1m/5m/15m/1h/4h retry schedule (the demo uses about 0.002)",
    )
    backoff_jitter: float = setting(
        "ENRICHMENT_BACKOFF_JITTER",
        0.1,
        "each delay is its step × uniform[1 − j, 1 + j]",
        high=0.5,
    )
    max_retries: int = setting(
        "ENRICHMENT_MAX_RETRIES",
        5,
        "retries after the first attempt before escalation (the partial index"
        " `idx_enrichment_retry` is built for 5: `RETRY_INDEX_MAX_RETRIES` in `core/models.py`)",
    )
    confidence_threshold: float = setting(
        "ENRICHMENT_CONFIDENCE_THRESHOLD",
        0.7,
        "the confidence threshold of new tenants (per tenant: `tenants.confidence_threshold`)",
        high=1.0,
    )
    low_confidence_recheck_s: float = setting(
        "ENRICHMENT_LOW_CONFIDENCE_RECHECK_S",
        86_400.0,
        "a low-confidence record is re-classified after this (the seed's 24 h)",
    )
    sweep_interval_s: float = setting(
        "ENRICHMENT_SWEEP_INTERVAL_S", 60.0, "how often beat sweeps", low=0.1
    )
    # The broker never holds a countdown longer than this (see selection.py).
    sweep_horizon_s: float = setting(
        "ENRICHMENT_SWEEP_HORIZON_S",
        360.0,
        "claim records due within this: the longest countdown the broker holds; on RabbitMQ,"
        " horizon + 6 × ENRICHMENT_AI_TIMEOUT_S + 300 s must stay under its 30 min"
        " `consumer_timeout` (below 1320 by default)",
        high=1800.0,
    )
    sweep_batch_size: int = setting(
        "ENRICHMENT_SWEEP_BATCH_SIZE", 500, "the most records one sweep claims", low=1
    )
    # A sweep claims what the fleet starts in about one interval (selection.py): recent
    # throughput x interval x headroom, less what is in flight, at least this many records.
    # Headroom 3 and a floor of 100: P6 measured 0.89x FIFO's throughput with 2 and 20 (a
    # slow ramp, and records in flight counted whole though partly done), 0.99x with these.
    sweep_min_batch: int = setting(
        "ENRICHMENT_SWEEP_MIN_BATCH",
        100,
        "the least a sweep claims (a cold fleet still moves)",
        low=1,
    )
    sweep_headroom: float = setting(
        "ENRICHMENT_SWEEP_HEADROOM",
        3.0,
        "a sweep claims recent throughput × interval × this, less what is in flight",
        low=1.0,
        high=10.0,
    )
    target_drain_s: float = setting(
        "ENRICHMENT_TARGET_DRAIN_S",
        600.0,
        "`/metrics`' `enrichment_desired_workers` asks for the workers that drain the backlog"
        " within this",
        low=1.0,
    )
    # "fifo" is the order before fair scheduling: for a single-tenant fleet, and the P6
    # baseline.
    claim_order: str = setting(
        "ENRICHMENT_CLAIM_ORDER",
        "fair",
        "`fair`: shares by tenant weight, priority within a tenant (selection.py); `fifo`: one"
        " queue in due order, blind to tenants, weights, caps, budgets and batch modes",
        choices=("fair", "fifo"),
    )
    lease_ttl_s: float = setting(
        "ENRICHMENT_LEASE_TTL_S",
        600.0,
        "a claim's lease lasts the sweep horizon plus this, from the claim; past it the sweep"
        " takes the record again",
        low=1.0,
    )
    # A threads/gevent pool with many tasks in flight needs more than the default.
    db_pool_size: int = setting(
        "ENRICHMENT_DB_POOL_SIZE",
        5,
        "PostgreSQL connections each worker process keeps open (threads pool: 20)",
        low=1,
    )
    db_max_overflow: int = setting(
        "ENRICHMENT_DB_MAX_OVERFLOW",
        5,
        "PostgreSQL connections each worker process opens on demand beyond those (threads"
        " pool: 10)",
    )
    api_pool_timeout_s: float = setting(
        "ENRICHMENT_API_POOL_TIMEOUT_S",
        5.0,
        "how long an API request waits for a free PostgreSQL connection; past it the answer is"
        " 503 with Retry-After",
        low=0.1,
    )
    api_rpm: int = setting(
        "ENRICHMENT_API_RPM",
        600,
        "API requests per minute per tenant, a token bucket in the rate limiter's Redis shared by"
        " every API process; over it 429 with Retry-After (0: unlimited; tenant setting"
        " `api_rpm` overrides)",
    )
    api_burst: int = setting(
        "ENRICHMENT_API_BURST",
        60,
        "the API token bucket's size: requests a tenant may send at once (tenant setting"
        " `api_burst` overrides)",
        low=1,
    )
    api_concurrency: int = setting(
        "ENRICHMENT_API_CONCURRENCY",
        20,
        "API requests in flight per tenant across every API process; over it 429 (0:"
        " unlimited; tenant setting `api_concurrency` overrides)",
    )
    ai_timeout_s: float = setting(
        "ENRICHMENT_AI_TIMEOUT_S",
        30.0,
        "timeout per AI call; the task time limits derive from it",
        low=0.1,
    )
    anthropic_model: str = setting(
        "ENRICHMENT_ANTHROPIC_MODEL",
        "claude-haiku-5-5",
        "must have a row in `enrichment/providers/pricing.py`; one that refuses forced tool"
        " use fails at start-up, a deprecated one logs `anthropic.model_deprecated`",
    )
    anthropic_base_url: str | None = setting(
        "ANTHROPIC_BASE_URL",
        None,
        "point the SDK elsewhere (the fake server in drills)",
        shown="the SDK's default",
    )
    anthropic_max_tokens: int = setting(
        "ENRICHMENT_ANTHROPIC_MAX_TOKENS", 1024, "output cap per call", low=1
    )
    anthropic_max_retries: int = setting(
        "ENRICHMENT_ANTHROPIC_MAX_RETRIES",
        2,
        "the SDK's own retries per call (429/5xx/529/timeouts)",
    )
    anthropic_max_retry_wait_s: float = setting(
        "ENRICHMENT_ANTHROPIC_MAX_RETRY_WAIT_S", 10.0, "cap on one of the SDK's retry sleeps"
    )
    prompt_version: str = setting(
        "ENRICHMENT_PROMPT_VERSION",
        "v2",
        "prompt files `enrichment/providers/prompts/*_<version>.txt`; recorded on every attempt",
    )
    experiment: experiments.Experiment | None = setting(
        "ENRICHMENT_EXPERIMENT",
        None,
        "the fleet's experiment: JSON of the same shape as the tenant key `experiment`, run by"
        " every tenant without its own (a tenant's own replaces it whole); empty: none",
    )
    ai_rpm: int = setting(
        "ENRICHMENT_AI_RPM",
        50,
        "fleet-wide AI requests per minute, a token bucket in Redis (0: unlimited), shared by"
        " weight among the tenants that asked in the last 10 s",
    )
    ai_burst: int = setting(
        "ENRICHMENT_AI_BURST",
        5,
        "the token bucket's size, in [1, ENRICHMENT_AI_RPM]",
        derive=_burst_default,
        shown="rpm ÷ 10, at least 1 (5)",
    )
    ai_rate_wait_max_s: float = setting(
        "ENRICHMENT_AI_RATE_WAIT_MAX_S",
        2.0,
        "a call waits in-process for a token up to this, else its task is re-enqueued (no"
        " retry spent)",
    )
    ratelimit_redis_url: str | None = setting(
        "ENRICHMENT_RATELIMIT_REDIS_URL",
        None,
        "the Redis of the AI rate limiter and the API's per-tenant limits; set, it wins over a"
        " Redis broker; none: both are off (on RabbitMQ, set it or they are off)",
        derive=_ratelimit_redis_default,
        shown="the broker, if it is Redis",
    )
    local_fault_rate: float = setting(
        "ENRICHMENT_LOCAL_FAULT_RATE",
        0.0,
        "drills only: share of `local` provider calls that fail on purpose",
        high=1.0,
    )
    log_format: str = setting(
        "ENRICHMENT_LOG_FORMAT", "console", "`json` in production, `console` for a terminal"
    )
    monitor: MonitorConfig = section(MonitorConfig, "Monitor")
    alerts: AlertPolicy = section(AlertPolicy, "Alerts")
    slack: SlackConfig = section(SlackConfig, "Slack")
    routing: RoutingConfig = section(RoutingConfig, "Alert routing")
    webhooks: WebhookConfig = section(WebhookConfig, "Webhooks (the outbox)")
    batches: BatchConfig = section(BatchConfig, "Message Batches")
    breaker: BreakerConfig = section(BreakerConfig, "The provider breaker")
    reviews: ReviewConfig = section(ReviewConfig, "Reviews")
    record_limits: RecordLimits = section(RecordLimits, "Record limits")
    retention: RetentionConfig = section(RetentionConfig, "Retention")
    metrics_token: str | None = setting(
        "ENRICHMENT_METRICS_TOKEN", None, "if set, `/metrics` wants this bearer token"
    )
    metrics_open: bool = setting(
        "ENRICHMENT_METRICS_OPEN",
        False,
        "`1` opens `/metrics` to anyone when no token is set (it lists every tenant's"
        " volumes and AI cost); else it answers 403",
    )
    admin_token: str | None = setting(
        "ENRICHMENT_ADMIN_TOKEN",
        None,
        "the operator's bearer token for the admin API (`/api/admin/tenants`: list tenants,"
        " change their settings, disable them); unset: the admin API answers 403",
    )
    public_base_url: str | None = setting(
        "ENRICHMENT_PUBLIC_BASE_URL", None, "adds a report link to Slack messages"
    )
    archive_dir: str | None = setting(
        "ENRICHMENT_ARCHIVE_DIR",
        None,
        "where pruned history is archived first (gzip JSON Lines per tenant and day, with a"
        " manifest: enrichment/history/archive.py), a directory (mount or sync it to object"
        " storage); unset: nothing is archived",
    )

    def __post_init__(self) -> None:
        check_amqp_hold(self.broker_url, self.sweep_horizon_s, self.ai_timeout_s)

    @classmethod
    def from_env(cls) -> Settings:
        values = read_fields(cls)
        check_database_url(values["database_url"])
        if values["ai_provider"] == "anthropic" and not values["anthropic_api_key"]:
            raise ConfigurationError(
                "ENRICHMENT_AI_PROVIDER=anthropic needs ANTHROPIC_API_KEY to be set"
            )
        rpm, burst = values["ai_rpm"], values["ai_burst"]
        if rpm and not 1 <= burst <= rpm:
            raise ConfigurationError(f"ENRICHMENT_AI_BURST={burst} must be in [1, {rpm}]")
        values["public_base_url"] = (values["public_base_url"] or "").rstrip("/") or None
        values["experiment"] = experiments.from_env_value(values["experiment"])
        if values["retention"].records == ARCHIVE and not values["archive_dir"]:
            raise ConfigurationError(
                "ENRICHMENT_RETENTION_RECORDS=archive needs ENRICHMENT_ARCHIVE_DIR: records are"
                " removed only once archived (or set it to keep)"
            )
        private = values["webhooks"].allow_private  # the guarded sender's rules (outbound.py)
        outbound.check_setting("SLACK_WEBHOOK_URL", values["slack"].webhook_url,
                               allow_private=private, what="Slack webhook")  # fmt: skip
        outbound.check_setting("ENRICHMENT_PAGERDUTY_URL", values["routing"].pagerduty.url,
                               allow_private=private, what="PagerDuty")  # fmt: skip
        return cls(**values)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
