"""The environment's readers and the settings' sections, one frozen dataclass per concern
(monitor, alerts, Slack, PagerDuty, routing, webhooks, reviews, Message Batches). Only
settings.py and this module read the environment; `Settings` (settings.py) holds one of each
section. Every duration is in seconds (`_s`). Wrong values fail at start-up with a hint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


class ConfigurationError(RuntimeError):
    """A setting is missing or invalid; the message says how to fix it."""


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_float(name: str, default: float, *, low: float = 0.0, high: float | None = None) -> float:
    raw = env_str(name, str(default))
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a number") from None
    if value < low or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ConfigurationError(f"{name}={raw!r} must be {bound}")
    return value


def env_int(name: str, default: int, *, low: int = 0) -> int:
    raw = env_str(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a whole number") from None
    if value < low:
        raise ConfigurationError(f"{name}={raw!r} must be >= {low}")
    return value


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default)
    if value not in choices:
        raise ConfigurationError(f"{name}={value!r}: choose {' or '.join(map(repr, choices))}")
    return value


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
            url=env_str(f"{pre}URL", d.url),
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
            allow_private=env_str("ENRICHMENT_WEBHOOK_ALLOW_PRIVATE", "0") == "1",
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


@dataclass(frozen=True)
class BreakerConfig:
    """The provider breaker (ENRICHMENT_BREAKER_*; core/breaker.py has the rules).

    window_s, min_calls, failure_ratio: overload, 5xx, timeouts and 400s open the breaker
    when at least `failure_ratio` (0.5) of the last `min_calls` (20) interactive calls, all
    within the last `window_s` (60 s), failed so: LiteLLM's router cools a deployment at 50 %
    in a minute; a count window (Resilience4j's COUNT_BASED) trips after about ten failures
    however busy the fleet, and the minimum volume (Portkey's minimum_requests) keeps two
    unlucky calls from pausing a quiet fleet. The SDK's own retries have already absorbed
    the short blips by then.
    probe_initial_s, probe_max_s: while open, one real call per probe interval, from 15 s,
    doubling on each failed probe up to 120 s (the issue's "30 s or less, at most 2 min").
    fallback_model: ENRICHMENT_ANTHROPIC_FALLBACK_MODEL, one hop taken while the primary's
    breaker is open for overload (never for auth or spend); None: none.
    """

    window_s: float = 60.0
    min_calls: int = 20
    failure_ratio: float = 0.5
    probe_initial_s: float = 15.0
    probe_max_s: float = 120.0
    fallback_model: str | None = None

    @classmethod
    def from_env(cls) -> BreakerConfig:
        d = cls()
        initial = env_float("ENRICHMENT_BREAKER_PROBE_INITIAL_S", d.probe_initial_s, low=0.1)
        return cls(
            window_s=env_float("ENRICHMENT_BREAKER_WINDOW_S", d.window_s, low=1.0),
            min_calls=env_int("ENRICHMENT_BREAKER_MIN_CALLS", d.min_calls, low=1),
            failure_ratio=env_float(
                "ENRICHMENT_BREAKER_FAILURE_RATIO", d.failure_ratio, low=0.01, high=1.0
            ),
            probe_initial_s=initial,
            probe_max_s=env_float("ENRICHMENT_BREAKER_PROBE_MAX_S", d.probe_max_s, low=initial),
            fallback_model=os.environ.get("ENRICHMENT_ANTHROPIC_FALLBACK_MODEL") or None,
        )
