"""The settings' sections, one frozen dataclass per concern (monitor, alerts, Slack,
PagerDuty, routing, webhooks, reviews, Message Batches, the provider breaker); `Settings`
(settings.py) holds one of each. Each field states its default, variable, bounds and
meaning once (settings_env.setting). Every duration is in seconds (`_s`).
"""

from __future__ import annotations

from dataclasses import dataclass

from enrichment.core.settings_env import FromEnv, section, setting


@dataclass(frozen=True)
class MonitorConfig(FromEnv):
    """The monitor's pace, windows, integrity checks and quality score (monitor.py).
    The quality weights need not sum to 1."""

    interval_s: float = setting(
        "ENRICHMENT_MONITOR_INTERVAL_S",
        300.0,
        "monitor period per tenant (beat runs the task every interval ÷ the warning divisor)",
        low=1.0,
    )
    window_s: float = setting(
        "ENRICHMENT_MONITOR_WINDOW_S", 3600.0, "look-back of the rate metrics", low=60.0
    )
    stuck_after_s: float = setting(
        "ENRICHMENT_MONITOR_STUCK_AFTER_S",
        86_400.0,
        'integrity check: "still NULL after" this age (the seed\'s one day)',
        low=60.0,
    )
    high_confidence_target_pct: float = setting(
        "ENRICHMENT_MONITOR_HIGH_CONFIDENCE_TARGET_PCT",
        80.0,
        "integrity check: target for the high-confidence rate",
        high=100.0,
    )
    weight_high_confidence: float = setting(
        "ENRICHMENT_QUALITY_WEIGHT_HIGH_CONFIDENCE", 0.4, "quality score: high-confidence weight"
    )
    weight_completeness: float = setting(
        "ENRICHMENT_QUALITY_WEIGHT_COMPLETENESS", 0.4, "quality score: completeness weight"
    )
    weight_attempt_success: float = setting(
        "ENRICHMENT_QUALITY_WEIGHT_ATTEMPT_SUCCESS", 0.2, "quality score: attempt success weight"
    )


@dataclass(frozen=True)
class AlertPolicy(FromEnv):
    """When a condition becomes an alert, and how often a firing one is sent again."""

    for_evaluations: int = setting(
        "ENRICHMENT_ALERT_FOR_EVALUATIONS",
        3,
        "consecutive evaluations a condition must hold before the alert fires",
        low=1,
    )
    repeat_interval_s: float = setting(
        "ENRICHMENT_ALERT_REPEAT_INTERVAL_S",
        14_400.0,
        "re-send a still-firing alert after this long (4 h)",
        low=60.0,
    )
    min_sample: int = setting(
        "ENRICHMENT_ALERT_MIN_SAMPLE",
        50,
        "records (or window attempts) a rate metric needs before it can alert",
    )


@dataclass(frozen=True)
class SlackConfig(FromEnv):
    """Slack delivery. A longer Retry-After than max_retry_after_s gives up until the next
    evaluation."""

    timeout_s: float = setting("ENRICHMENT_SLACK_TIMEOUT_S", 5.0, "per request", low=0.1)
    max_attempts: int = setting(
        "ENRICHMENT_SLACK_MAX_ATTEMPTS", 4, "attempts in all per message", low=1
    )
    max_retry_after_s: float = setting(
        "ENRICHMENT_SLACK_MAX_RETRY_AFTER_S", 30.0, "the longest Retry-After waited out"
    )
    webhook_url: str | None = setting(
        "SLACK_WEBHOOK_URL", None, "the global webhook (a tenant's own wins); never logged"
    )


@dataclass(frozen=True)
class PagerDutyConfig(FromEnv):
    """PagerDuty Events API v2: the global routing key is a secret, never logged; tests
    point the endpoint at a local receiver."""

    routing_key: str | None = setting(
        "PAGERDUTY_ROUTING_KEY",
        None,
        "the global integration key (a tenant's own wins); never logged",
    )
    url: str = setting(
        "ENRICHMENT_PAGERDUTY_URL",
        "https://events.pagerduty.com/v2/enqueue",
        "the Events API v2 endpoint",
    )
    timeout_s: float = setting("ENRICHMENT_PAGERDUTY_TIMEOUT_S", 5.0, "per request", low=0.1)
    max_attempts: int = setting(
        "ENRICHMENT_PAGERDUTY_MAX_ATTEMPTS", 4, "attempts in all per event", low=1
    )
    max_retry_after_s: float = setting(
        "ENRICHMENT_PAGERDUTY_MAX_RETRY_AFTER_S", 30.0, "the longest Retry-After waited out"
    )


@dataclass(frozen=True)
class RoutingConfig(FromEnv):
    """Severity routing (alerting/routing.py): the warning speed-up and where pages go."""

    warning_divisor: float = setting(
        "ENRICHMENT_MONITOR_WARNING_DIVISOR",
        3.0,
        "while a warning fires for a tenant, it is monitored every interval ÷ this (1: no"
        " speed-up)",
        low=1.0,
        high=60.0,
    )
    pagerduty: PagerDutyConfig = section(PagerDutyConfig, "PagerDuty")


@dataclass(frozen=True)
class WebhookConfig(FromEnv):
    """Outbox delivery to the tenants' webhooks; after max_attempts (about 23 h of the
    1m/5m/30m/1h/3h/6h/12h schedule) an event is dead."""

    timeout_s: float = setting("ENRICHMENT_WEBHOOK_TIMEOUT_S", 10.0, "per POST", low=0.1)
    max_attempts: int = setting(
        "ENRICHMENT_WEBHOOK_MAX_ATTEMPTS", 8, "then the event is `dead`", low=1
    )
    backoff_scale: float = setting(
        "ENRICHMENT_WEBHOOK_BACKOFF_SCALE",
        1.0,
        "multiplies the 1m/5m/30m/1h/3h/6h/12h schedule (tests and the drill shrink it)",
    )
    interval_s: float = setting(
        "ENRICHMENT_WEBHOOK_INTERVAL_S", 30.0, "beat's backstop delivery run", low=0.1
    )
    batch_size: int = setting(
        "ENRICHMENT_WEBHOOK_BATCH_SIZE", 100, "events claimed per delivery round", low=1
    )
    allow_private: bool = setting(
        "ENRICHMENT_WEBHOOK_ALLOW_PRIVATE",
        False,
        "`1` accepts http:// and loopback, private or link-local addresses, for webhooks,"
        " Slack and PagerDuty alike (tests and the demo only)",
    )
    secret_overlap_s: float = setting(
        "ENRICHMENT_WEBHOOK_SECRET_OVERLAP_S",
        86_400.0,
        "after `enrichment webhook TENANT URL --new-secret`, the old secret keeps signing"
        " beside the new one this long (24 h; both signatures sent), so a receiver can switch"
        " without losing an event",
    )


@dataclass(frozen=True)
class ReviewConfig(FromEnv):
    """The people's side: the audit sample and the review page's sign-ins. Without a secret
    each API process makes a random one, so sign-ins end when it restarts and several API
    processes need it set."""

    audit_rate: float = setting(
        "ENRICHMENT_AUDIT_RATE",
        0.02,
        "share of AI-resolved records sampled for a person to check (per tenant:"
        ' `tenants.settings["audit_rate"]`)',
        high=1.0,
    )
    # Confidence you can trust (issue 24, reviews/stats.py): the threshold search's target
    # and floor. Advice from `enrichment eval --reviews`; nothing changes a threshold here.
    max_auto_error_rate: float = setting(
        "ENRICHMENT_MAX_AUTO_ERROR_RATE",
        0.05,
        "the error rate automated decisions may have: the advised threshold is the lowest"
        " whose upper 95 % Clopper-Pearson bound on the audit sample's error rate above it is"
        ' at most this (per tenant: `tenants.settings["max_auto_error_rate"]`)',
        low=0.001,
        high=0.5,
    )
    auto_threshold_floor: float = setting(
        "ENRICHMENT_AUTO_THRESHOLD_FLOOR",
        0.5,
        "the advised confidence threshold is never below this, however the reviews look",
        high=1.0,
    )
    # Calibration in production (issue 24): beat's refit (reviews/refit.py), the audit
    # sample's weighting (core/audit_sampling.py) and the drift window (metrics/drift.py).
    refit_interval_s: float = setting(
        "ENRICHMENT_CALIBRATION_INTERVAL_S",
        600.0,
        "how often beat refits the calibration maps (and, with a tenant's `auto_threshold`,"
        " its threshold); a run where no source has enough new reviews reads one count",
        low=10.0,
    )
    refit_reviews: int = setting(
        "ENRICHMENT_CALIBRATION_REFIT_REVIEWS",
        20,
        "new audit reviews of a source since its last calibration map before a new version"
        " is fitted (the first map waits for 50: reviews/stats.py MIN_MAP_REVIEWS)",
        low=1,
    )
    drift_window_reviews: int = setting(
        "ENRICHMENT_DRIFT_WINDOW_REVIEWS",
        200,
        "the monitor's rolling window for the error rate of automated decisions: at most"
        " this many of the latest audit reviews ...",
        low=10,
    )
    drift_window_s: float = setting(
        "ENRICHMENT_DRIFT_WINDOW_S",
        604_800.0,
        "... of at most this age (7 days)",
        low=3600.0,
    )
    session_s: float = setting(
        "ENRICHMENT_REVIEW_SESSION_S",
        28_800.0,
        "how long a review page sign-in lasts (8 h)",
        low=60.0,
    )
    idle_s: float = setting(
        "ENRICHMENT_REVIEW_IDLE_S",
        1800.0,
        "a review page sign-in not used for this long ends (30 min)",
        low=60.0,
    )
    signin_window_s: float = setting(
        "ENRICHMENT_REVIEW_SIGNIN_WINDOW_S",
        300.0,
        "the window over which wrong reviewer keys are counted (5 min)",
        low=1.0,
    )
    signin_address_max: int = setting(
        "ENRICHMENT_REVIEW_SIGNIN_ADDRESS_MAX",
        5,
        "wrong keys from one client address in the window before its sign-ins get 429",
        low=1,
    )
    signin_tenant_max: int = setting(
        "ENRICHMENT_REVIEW_SIGNIN_TENANT_MAX",
        20,
        "wrong keys for one tenant in the window before its sign-ins get 429",
        low=1,
    )
    # Time to a person (core/time_to_person.py), counted from a record's ingestion. Before
    # these, an ambiguous record of any severity waited five 24 h rechecks (5 days). Critical
    # (a parcel stopped, a customer waiting): 15 min, still five rechecks 2.5 min apart;
    # high: within the shift (4 h); medium: by the next day's shift (24 h, also the longest a
    # Message Batch may take, so medium records keep the batch price); low: 2 days.
    within_s_critical: float = setting(
        "ENRICHMENT_REVIEW_WITHIN_S_CRITICAL",
        900.0,
        "an undecided critical record reaches a person within this (15 min): its rechecks are"
        " shortened to fit, and it escalates early when its next try would land past it (per"
        ' tenant: `tenants.settings["time_to_person_s"]`)',
        low=1.0,
    )
    within_s_high: float = setting(
        "ENRICHMENT_REVIEW_WITHIN_S_HIGH",
        14_400.0,
        "the same for a high record (4 h)",
        low=1.0,
    )
    within_s_medium: float = setting(
        "ENRICHMENT_REVIEW_WITHIN_S_MEDIUM",
        86_400.0,
        "the same for a medium record (24 h: the next shift; the longest a Message Batch may"
        " take, so a medium record may still go by batch)",
        low=1.0,
    )
    within_s_low: float = setting(
        "ENRICHMENT_REVIEW_WITHIN_S_LOW",
        172_800.0,
        "the same for a low record (48 h)",
        low=1.0,
    )
    # The review deadline (reviews/queue.py): once in the queue, how long a record may wait
    # for its decision. The queue sorts by it. Not the time to a person above, which ends
    # when the record reaches the queue.
    deadline_s_critical: float = setting(
        "ENRICHMENT_REVIEW_DEADLINE_S_CRITICAL",
        3_600.0,
        "a queued critical record is due for its decision this long after it started waiting"
        ' (1 h; per tenant: `tenants.settings["review_deadline_s"]`)',
        low=1.0,
    )
    deadline_s_high: float = setting(
        "ENRICHMENT_REVIEW_DEADLINE_S_HIGH",
        14_400.0,
        "the same for a high record (4 h)",
        low=1.0,
    )
    deadline_s_medium: float = setting(
        "ENRICHMENT_REVIEW_DEADLINE_S_MEDIUM",
        86_400.0,
        "the same for a medium record (24 h)",
        low=1.0,
    )
    deadline_s_low: float = setting(
        "ENRICHMENT_REVIEW_DEADLINE_S_LOW",
        259_200.0,
        "the same for a low record (3 days)",
        low=1.0,
    )
    claim_s: float = setting(
        "ENRICHMENT_REVIEW_CLAIM_S",
        900.0,
        "opening a record on the review page holds it for its reviewer this long (15 min):"
        " others see it taken and cannot decide it until the claim runs out, is released or"
        " the record is decided",
        low=1.0,
    )
    secret: str | None = setting(
        "ENRICHMENT_REVIEW_SECRET",
        None,
        "signs the review page's session cookies (unset: random per process)",
    )


@dataclass(frozen=True)
class BatchConfig(FromEnv):
    """Message Batches; per tenant, tenants.settings["batch_mode"] ("auto", "never",
    "always") and ["batch_min_records"] choose when a backlog goes by batch. The request
    and byte limits default to the API's."""

    min_records: int = setting(
        "ENRICHMENT_BATCH_MIN_RECORDS",
        500,
        "with `batch_mode` `auto`, a tenant's due backlog above this goes by Message Batch",
        low=1,
    )
    interval_s: float = setting(
        "ENRICHMENT_BATCH_INTERVAL_S",
        60.0,
        "beat's batch run: apply ended batches, poll the rest, submit backlogs",
        low=0.1,
    )
    max_requests: int = setting(
        "ENRICHMENT_BATCH_MAX_REQUESTS",
        100_000,
        "requests in one batch; a bigger backlog is split",
        low=1,
    )
    max_bytes: int = setting(
        "ENRICHMENT_BATCH_MAX_BYTES", 256_000_000, "bytes in one batch", low=1_000
    )
    stale_submit_s: float = setting(
        "ENRICHMENT_BATCH_STALE_SUBMIT_S",
        600.0,
        "a batch whose create call never came back is given up after this and its records"
        " handed back; capped at sweep interval + horizon + lease TTL - batch interval",
    )


@dataclass(frozen=True)
class BreakerConfig(FromEnv):
    """The provider breaker (core/breaker.py has the rules).

    Overload, 5xx, timeouts and 400s open it when at least `failure_ratio` of the last
    `min_calls` interactive calls, all within `window_s`, failed so: LiteLLM's router cools
    a deployment at 50 % in a minute; a count window (Resilience4j's COUNT_BASED) trips after
    about ten failures however busy the fleet, and the minimum volume (Portkey's
    minimum_requests) keeps two unlucky calls from pausing a quiet fleet. The SDK's own
    retries have already absorbed the short blips by then. While open, one real call per
    probe interval, doubling on each failed probe (the issue's "30 s or less, at most 2 min").
    """

    window_s: float = setting(
        "ENRICHMENT_BREAKER_WINDOW_S", 60.0, "the failed calls counted are this recent", low=1.0
    )
    min_calls: int = setting(
        "ENRICHMENT_BREAKER_MIN_CALLS", 20, "the last interactive calls counted", low=1
    )
    failure_ratio: float = setting(
        "ENRICHMENT_BREAKER_FAILURE_RATIO",
        0.5,
        "the share of them that failed for an overload, 5xx, timeout or 400 that opens it",
        low=0.01,
        high=1.0,
    )
    probe_initial_s: float = setting(
        "ENRICHMENT_BREAKER_PROBE_INITIAL_S",
        15.0,
        "while open, one probe (a real stage of a due record) per this interval",
        low=0.1,
    )
    probe_max_s: float = setting(
        "ENRICHMENT_BREAKER_PROBE_MAX_S",
        120.0,
        "the probe interval doubles after each failed probe, up to this",
        low="probe_initial_s",
    )
    fallback_model: str | None = setting(
        "ENRICHMENT_ANTHROPIC_FALLBACK_MODEL",
        None,
        "a second model (priced, tool-capable) for the stages while the primary's breaker is"
        " open for an overload (never for a refused key or a spend cap); one hop",
    )


@dataclass(frozen=True)
class RecordLimits(FromEnv):
    """How big one record may be (core/record_limits.py): ingestion refuses a line or item
    over any of these with its reason, and a stage refuses a stored record over them (an old
    row, a direct insert) as a record fault, before any AI call. The payload's limits count
    every depth."""

    max_key_chars: int = setting(
        "ENRICHMENT_RECORD_MAX_KEY_CHARS", 256, "the longest key in an order payload", low=1
    )
    max_keys: int = setting(
        "ENRICHMENT_RECORD_MAX_KEYS", 1000, "keys in an order payload, at every depth", low=1
    )
    max_depth: int = setting(
        "ENRICHMENT_RECORD_MAX_DEPTH",
        16,
        "objects and lists nested in an order payload (or in one event)",
        low=1,
    )
    max_text_chars: int = setting(
        "ENRICHMENT_RECORD_MAX_TEXT_CHARS",
        10_000,
        "the longest string value in an order payload (or in one event), and an event's"
        " object detail as JSON",
        low=1,
    )
    max_notes_chars: int = setting(
        "ENRICHMENT_RECORD_MAX_NOTES_CHARS", 10_000, "the longest exception note", low=1
    )
