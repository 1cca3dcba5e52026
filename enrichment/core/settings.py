"""One settings object, read from the environment once per process: the only module that
reads the environment (ENRICHMENT_VAR_DIR aside, which decides where the defaults live).

Every duration is in seconds (`_s`). Wrong values fail at start-up with a hint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

VAR_DIR = Path(os.environ.get("ENRICHMENT_VAR_DIR", "var")).resolve()


class ConfigurationError(RuntimeError):
    """A setting is missing or invalid; the message says how to fix it."""


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_float(name: str, default: float, *, low: float = 0.0, high: float | None = None) -> float:
    raw = _env(name, str(default))
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a number") from None
    if value < low or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ConfigurationError(f"{name}={raw!r} must be {bound}")
    return value


def env_int(name: str, default: int, *, low: int = 0) -> int:
    raw = _env(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a whole number") from None
    if value < low:
        raise ConfigurationError(f"{name}={raw!r} must be >= {low}")
    return value


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = _env(name, default)
    if value not in choices:
        raise ConfigurationError(f"{name}={value!r}: choose {' or '.join(map(repr, choices))}")
    return value


def _burst(rpm: int) -> int:
    burst = env_int("ENRICHMENT_AI_BURST", max(1, rpm // 10))
    if rpm and not 1 <= burst <= rpm:
        raise ConfigurationError(f"ENRICHMENT_AI_BURST={burst} must be in [1, {rpm}]")
    return burst


@dataclass(frozen=True)
class MonitorConfig:
    """Monitor knobs (ENRICHMENT_MONITOR_* / ENRICHMENT_QUALITY_*).

    interval_s: beat period of the `enrichment.monitor` task (300 s).
    window_s: look-back of the rate metrics (3600 s).
    stuck_after_s: integrity check "still NULL after" age (86 400 s, the seed's one day).
    high_confidence_target_pct: integrity check target for the high-confidence rate (80).
    weight_*: quality score weights (0.4 / 0.4 / 0.2); they need not sum to 1.
    """

    interval_s: float = 300.0
    window_s: float = 3600.0
    stuck_after_s: float = 86_400.0
    high_confidence_target_pct: float = 80.0
    weight_high_confidence: float = 0.4
    weight_completeness: float = 0.4
    weight_attempt_success: float = 0.2

    @classmethod
    def from_env(cls) -> MonitorConfig:
        d = cls()  # the defaults live once, in the fields above
        return cls(
            interval_s=env_float("ENRICHMENT_MONITOR_INTERVAL_S", d.interval_s, low=1.0),
            window_s=env_float("ENRICHMENT_MONITOR_WINDOW_S", d.window_s, low=60.0),
            stuck_after_s=env_float("ENRICHMENT_MONITOR_STUCK_AFTER_S", d.stuck_after_s, low=60.0),
            high_confidence_target_pct=env_float(
                "ENRICHMENT_MONITOR_HIGH_CONFIDENCE_TARGET_PCT",
                d.high_confidence_target_pct,
                high=100.0,
            ),
            weight_high_confidence=env_float(
                "ENRICHMENT_QUALITY_WEIGHT_HIGH_CONFIDENCE", d.weight_high_confidence
            ),
            weight_completeness=env_float(
                "ENRICHMENT_QUALITY_WEIGHT_COMPLETENESS", d.weight_completeness
            ),
            weight_attempt_success=env_float(
                "ENRICHMENT_QUALITY_WEIGHT_ATTEMPT_SUCCESS", d.weight_attempt_success
            ),
        )


@dataclass(frozen=True)
class AlertPolicy:
    """Alerting knobs (ENRICHMENT_ALERT_*).

    for_evaluations: consecutive evaluations a condition must hold before firing (3).
    repeat_interval_s: re-send a still-firing alert after this long (14 400 s = 4 h).
    min_sample: records (or window attempts) a rate metric needs before it can alert (50).
    """

    for_evaluations: int = 3
    repeat_interval_s: float = 14_400.0
    min_sample: int = 50

    @classmethod
    def from_env(cls) -> AlertPolicy:
        d = cls()
        return cls(
            for_evaluations=env_int("ENRICHMENT_ALERT_FOR_EVALUATIONS", d.for_evaluations, low=1),
            repeat_interval_s=env_float(
                "ENRICHMENT_ALERT_REPEAT_INTERVAL_S", d.repeat_interval_s, low=60.0
            ),
            min_sample=env_int("ENRICHMENT_ALERT_MIN_SAMPLE", d.min_sample),
        )


@dataclass(frozen=True)
class SlackConfig:
    """Delivery knobs (ENRICHMENT_SLACK_*): timeout_s per request (5), max_attempts in all
    (4), max_retry_after_s: a longer Retry-After gives up until the next evaluation (30),
    and SLACK_WEBHOOK_URL, the global webhook used when a tenant has none (unset)."""

    timeout_s: float = 5.0
    max_attempts: int = 4
    max_retry_after_s: float = 30.0
    webhook_url: str | None = None

    @classmethod
    def from_env(cls) -> SlackConfig:
        d = cls()
        return cls(
            timeout_s=env_float("ENRICHMENT_SLACK_TIMEOUT_S", d.timeout_s, low=0.1),
            max_attempts=env_int("ENRICHMENT_SLACK_MAX_ATTEMPTS", d.max_attempts, low=1),
            max_retry_after_s=env_float("ENRICHMENT_SLACK_MAX_RETRY_AFTER_S", d.max_retry_after_s),
            webhook_url=os.environ.get("SLACK_WEBHOOK_URL") or None,
        )


@dataclass(frozen=True)
class PagerDutyConfig:
    """PagerDuty Events API v2 (ENRICHMENT_PAGERDUTY_*): routing_key, the global integration
    key for tenants without their own (PAGERDUTY_ROUTING_KEY; a secret, never logged); url,
    the endpoint (tests point it at a local receiver); delivery knobs as for Slack."""

    routing_key: str | None = None
    url: str = "https://events.pagerduty.com/v2/enqueue"
    timeout_s: float = 5.0
    max_attempts: int = 4
    max_retry_after_s: float = 30.0

    @classmethod
    def from_env(cls) -> PagerDutyConfig:
        d, pre = cls(), "ENRICHMENT_PAGERDUTY_"
        return cls(
            routing_key=os.environ.get("PAGERDUTY_ROUTING_KEY") or None,
            url=_env(f"{pre}URL", d.url),
            timeout_s=env_float(f"{pre}TIMEOUT_S", d.timeout_s, low=0.1),
            max_attempts=env_int(f"{pre}MAX_ATTEMPTS", d.max_attempts, low=1),
            max_retry_after_s=env_float(f"{pre}MAX_RETRY_AFTER_S", d.max_retry_after_s),
        )


@dataclass(frozen=True)
class RoutingConfig:
    """Severity routing (monitoring/routing.py). warning_divisor: while a warning fires for a
    tenant, the monitor evaluates it every ENRICHMENT_MONITOR_INTERVAL_S / this
    (ENRICHMENT_MONITOR_WARNING_DIVISOR, 3; 1: no speed-up); pagerduty: where pages go."""

    warning_divisor: float = 3.0
    pagerduty: PagerDutyConfig = field(default_factory=PagerDutyConfig)

    @classmethod
    def from_env(cls) -> RoutingConfig:
        divisor = env_float("ENRICHMENT_MONITOR_WARNING_DIVISOR", 3.0, low=1.0, high=60.0)
        return cls(warning_divisor=divisor, pagerduty=PagerDutyConfig.from_env())


@dataclass(frozen=True)
class WebhookConfig:
    """Outbox delivery knobs (ENRICHMENT_WEBHOOK_*).

    timeout_s: per POST (10). max_attempts: then the event is dead (8). backoff_scale:
    multiplies the retry schedule 1m/5m/30m/1h/3h/6h/12h, about 23 h in all (1; tests and
    the drill shrink it). interval_s: beat's backstop delivery run (30). batch_size: events
    claimed per round (100). allow_private: accept http:// and loopback, private or
    link-local addresses (off; on for tests and the demo only).
    """

    timeout_s: float = 10.0
    max_attempts: int = 8
    backoff_scale: float = 1.0
    interval_s: float = 30.0
    batch_size: int = 100
    allow_private: bool = False

    @classmethod
    def from_env(cls) -> WebhookConfig:
        d = cls()
        return cls(
            timeout_s=env_float("ENRICHMENT_WEBHOOK_TIMEOUT_S", d.timeout_s, low=0.1),
            max_attempts=env_int("ENRICHMENT_WEBHOOK_MAX_ATTEMPTS", d.max_attempts, low=1),
            backoff_scale=env_float("ENRICHMENT_WEBHOOK_BACKOFF_SCALE", d.backoff_scale),
            interval_s=env_float("ENRICHMENT_WEBHOOK_INTERVAL_S", d.interval_s, low=0.1),
            batch_size=env_int("ENRICHMENT_WEBHOOK_BATCH_SIZE", d.batch_size, low=1),
            allow_private=_env("ENRICHMENT_WEBHOOK_ALLOW_PRIVATE", "0") == "1",
        )


@dataclass(frozen=True)
class ReviewConfig:
    """The people's side (ENRICHMENT_AUDIT_RATE, ENRICHMENT_REVIEW_*).

    audit_rate: share of AI-resolved records sampled at random for a person to check (0.02;
    per tenant: tenants.settings["audit_rate"]). session_s: how long a review page sign-in
    lasts (28 800 = 8 h). secret: signs the review page's session cookies
    (ENRICHMENT_REVIEW_SECRET; unset: a random one per process, so sign-ins end when the
    API restarts and several API processes need it set).
    """

    audit_rate: float = 0.02
    session_s: float = 28_800.0
    secret: str | None = None

    @classmethod
    def from_env(cls) -> ReviewConfig:
        d = cls()
        return cls(
            audit_rate=env_float("ENRICHMENT_AUDIT_RATE", d.audit_rate, high=1.0),
            session_s=env_float("ENRICHMENT_REVIEW_SESSION_S", d.session_s, low=60.0),
            secret=os.environ.get("ENRICHMENT_REVIEW_SECRET") or None,
        )


@dataclass(frozen=True)
class BatchConfig:
    """Message Batches knobs (ENRICHMENT_BATCH_*); per tenant, tenants.settings["batch_mode"]
    ("auto", "never", "always") and ["batch_min_records"] choose when a backlog goes by batch.

    min_records: with "auto", a tenant's due backlog above this goes by batch (500).
    interval_s: beat's batch run: submit, poll, apply (60). max_requests / max_bytes: one
    batch's limits (the API's 100,000 requests and 256 MB). stale_submit_s: a batch row
    whose create call never came back is given up after this long and its records released
    (600).
    """

    min_records: int = 500
    interval_s: float = 60.0
    max_requests: int = 100_000
    max_bytes: int = 256_000_000
    stale_submit_s: float = 600.0

    @classmethod
    def from_env(cls) -> BatchConfig:
        d = cls()
        return cls(
            min_records=env_int("ENRICHMENT_BATCH_MIN_RECORDS", d.min_records, low=1),
            interval_s=env_float("ENRICHMENT_BATCH_INTERVAL_S", d.interval_s, low=0.1),
            max_requests=env_int("ENRICHMENT_BATCH_MAX_REQUESTS", d.max_requests, low=1),
            max_bytes=env_int("ENRICHMENT_BATCH_MAX_BYTES", d.max_bytes, low=1_000),
            stale_submit_s=env_float("ENRICHMENT_BATCH_STALE_SUBMIT_S", d.stale_submit_s),
        )


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
    sweep_min_batch: int = 20
    sweep_headroom: float = 2.0
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
            database_url=_env("DATABASE_URL", default_database_url()),
            broker_url=_env("CELERY_BROKER_URL", default_broker_url()),
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
            sweep_min_batch=env_int("ENRICHMENT_SWEEP_MIN_BATCH", 20, low=1),
            sweep_headroom=env_float("ENRICHMENT_SWEEP_HEADROOM", 2.0, low=1.0, high=10.0),
            target_drain_s=env_float("ENRICHMENT_TARGET_DRAIN_S", 600.0, low=1.0),
            claim_order=env_choice("ENRICHMENT_CLAIM_ORDER", "fair", ("fair", "fifo")),
            lease_ttl_s=env_float("ENRICHMENT_LEASE_TTL_S", 600.0, low=1.0),
            db_pool_size=env_int("ENRICHMENT_DB_POOL_SIZE", 5, low=1),
            db_max_overflow=env_int("ENRICHMENT_DB_MAX_OVERFLOW", 5),
            ai_timeout_s=env_float("ENRICHMENT_AI_TIMEOUT_S", 30.0, low=0.1),
            anthropic_model=_env("ENRICHMENT_ANTHROPIC_MODEL", "claude-haiku-5-5"),
            anthropic_base_url=os.environ.get("ANTHROPIC_BASE_URL") or None,
            anthropic_max_tokens=env_int("ENRICHMENT_ANTHROPIC_MAX_TOKENS", 1024, low=1),
            anthropic_max_retries=env_int("ENRICHMENT_ANTHROPIC_MAX_RETRIES", 2),
            anthropic_max_retry_wait_s=env_float("ENRICHMENT_ANTHROPIC_MAX_RETRY_WAIT_S", 10.0),
            prompt_version=_env("ENRICHMENT_PROMPT_VERSION", "v2"),
            ai_rpm=rpm,
            ai_burst=_burst(rpm),
            ai_rate_wait_max_s=env_float("ENRICHMENT_AI_RATE_WAIT_MAX_S", 2.0),
            ratelimit_redis_url=os.environ.get("ENRICHMENT_RATELIMIT_REDIS_URL") or None,
            local_fault_rate=env_float("ENRICHMENT_LOCAL_FAULT_RATE", 0.0, high=1.0),
            log_format=_env("ENRICHMENT_LOG_FORMAT", "console"),
            monitor=MonitorConfig.from_env(),
            alerts=AlertPolicy.from_env(),
            slack=SlackConfig.from_env(),
            routing=RoutingConfig.from_env(),
            webhooks=WebhookConfig.from_env(),
            batches=BatchConfig.from_env(),
            reviews=ReviewConfig.from_env(),
            metrics_token=os.environ.get("ENRICHMENT_METRICS_TOKEN") or None,
            public_base_url=(os.environ.get("ENRICHMENT_PUBLIC_BASE_URL") or "").rstrip("/")
            or None,
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
