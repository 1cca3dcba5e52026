"""One settings object, read from the environment once per process: with config.py (its
sections), the only module that reads the environment (ENRICHMENT_VAR_DIR aside, which
decides where the defaults live).

Every duration is in seconds (`_s`). Wrong values fail at start-up with a hint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from enrichment.core.config import (
    AlertPolicy,
    BatchConfig,
    BreakerConfig,
    ConfigurationError,
    MonitorConfig,
    ReviewConfig,
    RoutingConfig,
    SlackConfig,
    WebhookConfig,
    env_choice,
    env_float,
    env_int,
    env_str,
)

VAR_DIR = Path(os.environ.get("ENRICHMENT_VAR_DIR", "var")).resolve()


def _burst(rpm: int) -> int:
    burst = env_int("ENRICHMENT_AI_BURST", max(1, rpm // 10))
    if rpm and not 1 <= burst <= rpm:
        raise ConfigurationError(f"ENRICHMENT_AI_BURST={burst} must be in [1, {rpm}]")
    return burst


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


@dataclass(frozen=True)
class Settings:
    """The fleet's configuration. See README "Configuration reference"."""

    database_url: str = field(default_factory=default_database_url)
    broker_url: str = field(default_factory=default_broker_url)
    ai_provider: str = "local"
    anthropic_api_key: str | None = None
    # Retry schedule: 1m/5m/15m/1h/4h multiplied by this (the demo uses ~0.002).
    backoff_scale: float = 1.0
    backoff_jitter: float = 0.1
    max_retries: int = 5
    confidence_threshold: float = 0.7
    # The seed's "not updated for 24 hours" for low-confidence rechecks.
    low_confidence_recheck_s: float = 86_400.0
    sweep_interval_s: float = 60.0
    # The broker never holds a countdown longer than this (see selection.py).
    sweep_horizon_s: float = 360.0
    sweep_batch_size: int = 500
    # A sweep claims what the fleet starts in about one interval (selection.py): recent
    # throughput x interval x headroom, less what is in flight, at least this many records.
    # Headroom 3 and a floor of 100: P6 measured 0.89x FIFO's throughput with 2 and 20 (a
    # slow ramp, and records in flight counted whole though partly done), 0.99x with these.
    sweep_min_batch: int = 100
    sweep_headroom: float = 3.0
    # /metrics' enrichment_desired_workers: workers to drain the backlog within this.
    target_drain_s: float = 600.0
    # "fair": shares by tenant weight, priority within a tenant (selection.py). "fifo": one
    # queue in due order, blind to tenants, weights, caps, budgets and batch modes (the order
    # before fair scheduling: for a single-tenant fleet, and the P6 baseline).
    claim_order: str = "fair"
    lease_ttl_s: float = 600.0
    # PostgreSQL connections per worker process: pool_size kept open, max_overflow more on
    # demand. A threads/gevent pool with many tasks in flight needs more than the default.
    db_pool_size: int = 5
    db_max_overflow: int = 5
    ai_timeout_s: float = 30.0
    anthropic_model: str = "claude-haiku-5-5"
    anthropic_base_url: str | None = None
    anthropic_max_tokens: int = 1024
    # The SDK's own retries per call, and the cap on one of its retry sleeps.
    anthropic_max_retries: int = 2
    anthropic_max_retry_wait_s: float = 10.0
    prompt_version: str = "v2"
    # Fleet-wide requests per minute to the AI (0 = unlimited); burst = bucket size.
    ai_rpm: int = 50
    ai_burst: int = 5
    # How long a call waits in-process for a token before handing the worker back.
    ai_rate_wait_max_s: float = 2.0
    ratelimit_redis_url: str | None = None
    # Demo/drill knob: share of local-provider calls that fail on purpose (0 in production).
    local_fault_rate: float = 0.0
    log_format: str = "console"
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    alerts: AlertPolicy = field(default_factory=AlertPolicy)
    slack: SlackConfig = field(default_factory=SlackConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    webhooks: WebhookConfig = field(default_factory=WebhookConfig)
    batches: BatchConfig = field(default_factory=BatchConfig)
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    reviews: ReviewConfig = field(default_factory=ReviewConfig)
    # Bearer token for /metrics (open when unset); base URL for report links in alerts.
    metrics_token: str | None = None
    public_base_url: str | None = None

    def __post_init__(self) -> None:
        check_amqp_hold(self.broker_url, self.sweep_horizon_s, self.ai_timeout_s)

    @classmethod
    def from_env(cls) -> Settings:
        key = os.environ.get("ANTHROPIC_API_KEY") or None
        provider = env_choice(
            "ENRICHMENT_AI_PROVIDER", "anthropic" if key else "local", ("local", "anthropic")
        )
        if provider == "anthropic" and not key:
            raise ConfigurationError(
                "ENRICHMENT_AI_PROVIDER=anthropic needs ANTHROPIC_API_KEY to be set"
            )
        rpm = env_int("ENRICHMENT_AI_RPM", 50)
        return cls(
            database_url=env_str("DATABASE_URL", default_database_url()),
            broker_url=env_str("CELERY_BROKER_URL", default_broker_url()),
            ai_provider=provider,
            anthropic_api_key=key,
            backoff_scale=env_float("ENRICHMENT_BACKOFF_SCALE", 1.0),
            backoff_jitter=env_float("ENRICHMENT_BACKOFF_JITTER", 0.1, high=0.5),
            max_retries=env_int("ENRICHMENT_MAX_RETRIES", 5),
            confidence_threshold=env_float("ENRICHMENT_CONFIDENCE_THRESHOLD", 0.7, high=1.0),
            low_confidence_recheck_s=env_float("ENRICHMENT_LOW_CONFIDENCE_RECHECK_S", 86_400.0),
            sweep_interval_s=env_float("ENRICHMENT_SWEEP_INTERVAL_S", 60.0, low=0.1),
            sweep_horizon_s=env_float("ENRICHMENT_SWEEP_HORIZON_S", 360.0, high=1800.0),
            sweep_batch_size=env_int("ENRICHMENT_SWEEP_BATCH_SIZE", 500, low=1),
            sweep_min_batch=env_int("ENRICHMENT_SWEEP_MIN_BATCH", 100, low=1),
            sweep_headroom=env_float("ENRICHMENT_SWEEP_HEADROOM", 3.0, low=1.0, high=10.0),
            target_drain_s=env_float("ENRICHMENT_TARGET_DRAIN_S", 600.0, low=1.0),
            claim_order=env_choice("ENRICHMENT_CLAIM_ORDER", "fair", ("fair", "fifo")),
            lease_ttl_s=env_float("ENRICHMENT_LEASE_TTL_S", 600.0, low=1.0),
            db_pool_size=env_int("ENRICHMENT_DB_POOL_SIZE", 5, low=1),
            db_max_overflow=env_int("ENRICHMENT_DB_MAX_OVERFLOW", 5),
            ai_timeout_s=env_float("ENRICHMENT_AI_TIMEOUT_S", 30.0, low=0.1),
            anthropic_model=env_str("ENRICHMENT_ANTHROPIC_MODEL", "claude-haiku-5-5"),
            anthropic_base_url=os.environ.get("ANTHROPIC_BASE_URL") or None,
            anthropic_max_tokens=env_int("ENRICHMENT_ANTHROPIC_MAX_TOKENS", 1024, low=1),
            anthropic_max_retries=env_int("ENRICHMENT_ANTHROPIC_MAX_RETRIES", 2),
            anthropic_max_retry_wait_s=env_float("ENRICHMENT_ANTHROPIC_MAX_RETRY_WAIT_S", 10.0),
            prompt_version=env_str("ENRICHMENT_PROMPT_VERSION", "v2"),
            ai_rpm=rpm,
            ai_burst=_burst(rpm),
            ai_rate_wait_max_s=env_float("ENRICHMENT_AI_RATE_WAIT_MAX_S", 2.0),
            ratelimit_redis_url=os.environ.get("ENRICHMENT_RATELIMIT_REDIS_URL") or None,
            local_fault_rate=env_float("ENRICHMENT_LOCAL_FAULT_RATE", 0.0, high=1.0),
            log_format=env_str("ENRICHMENT_LOG_FORMAT", "console"),
            monitor=MonitorConfig.from_env(),
            alerts=AlertPolicy.from_env(),
            slack=SlackConfig.from_env(),
            routing=RoutingConfig.from_env(),
            webhooks=WebhookConfig.from_env(),
            batches=BatchConfig.from_env(),
            breaker=BreakerConfig.from_env(),
            reviews=ReviewConfig.from_env(),
            metrics_token=os.environ.get("ENRICHMENT_METRICS_TOKEN") or None,
            public_base_url=(os.environ.get("ENRICHMENT_PUBLIC_BASE_URL") or "").rstrip("/")
            or None,
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
