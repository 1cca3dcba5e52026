"""Threshold alerts with Alertmanager-like behaviour, state kept in the `alerts` table.

Lifecycle of one alert (tenant, metric, severity):
inactive -> pending (condition held on fewer than `for_evaluations` consecutive evaluations)
-> firing (notified; re-notified every `repeat_interval_s`) -> resolved (condition cleared
past the hysteresis bound; a resolved notification is owed) -> inactive once it is delivered.

Suppression, in Alertmanager's order: a tenant+metric silence mutes notifications (state still
moves), and a firing critical alert inhibits the warning of the same tenant and metric. A
resolve that comes while silenced is still owed to the channels that keep an incident open
(PagerDuty: a `muted` resolve, see `routing`), so a page never stays open for a condition that
has cleared.
Rate metrics need `min_sample` records/attempts behind them, so tiny tenants never page.

The decisions (`evaluate`, `advance`, `plan`, `after_delivery`) are pure: state in, new state
and notifications out. `alert_store` loads and stores that state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import structlog

from enrichment.core.settings import AlertPolicy, ReviewConfig
from enrichment.core.tenant_settings import TenantSettings

log = structlog.get_logger(__name__)

CRITICAL, WARNING = "critical", "warning"
# Notices (`notices`): shown on the report page and in the health route, never pushed.
INFO = "info"
BELOW, ABOVE, AT_LEAST = "below", "above", "at_least"


@dataclass(frozen=True)
class Rule:
    """One threshold. Fires when the value is `op` `threshold`; once firing, it clears only
    when the value is back past `resolve` (the hysteresis bound that stops flapping).

    sample_field: the snapshot count that must reach `min_sample` (None: a count metric,
    always judged). for_evaluations: overrides the policy's N (None: use the policy's).
    """

    name: str
    metric: str
    field: str
    severity: str
    op: str
    threshold: float
    resolve: float
    sample_field: str | None
    unit: str
    for_evaluations: int | None = None


# ENRICHMENT_MAX_AUTO_ERROR_RATE's default, in %: the auto_error rules' threshold for a
# tenant without its own max_auto_error_rate.
AUTO_ERROR_PCT = 100 * ReviewConfig.max_auto_error_rate

# The seed's thresholds; per tenant, tenants.settings["alert_thresholds"] overrides any
# `name` (and `<name>_resolve` its hysteresis bound).
DEFAULT_RULES: tuple[Rule, ...] = (
    Rule("completeness_critical", "completeness", "completeness_pct", CRITICAL, BELOW,
         70.0, 75.0, "total_records", "%"),
    Rule("completeness_warning", "completeness", "completeness_pct", WARNING, BELOW,
         85.0, 88.0, "total_records", "%"),
    Rule("quality_critical", "quality", "quality_score", CRITICAL, BELOW,
         60.0, 65.0, "total_records", "/100"),
    Rule("quality_warning", "quality", "quality_score", WARNING, BELOW,
         80.0, 83.0, "total_records", "/100"),
    Rule("backlog_critical", "backlog", "backlog_records", CRITICAL, ABOVE,
         1000.0, 800.0, None, " records"),
    Rule("failure_rate_critical", "failure_rate", "failure_rate_pct", CRITICAL, ABOVE,
         20.0, 15.0, "window_attempts", "%"),
    # Every escalated record waits for a person: no sample size, no delay.
    Rule("escalated_warning", "escalated", "escalated_records", WARNING, ABOVE,
         0.0, 0.0, None, " records", for_evaluations=1),
    # A dead event is a decision its receiver never got: a person must act now.
    Rule("dead_events_critical", "dead_events", "dead_events", CRITICAL, ABOVE,
         0.0, 0.0, None, " events", for_evaluations=1),
    # A stopped event is one the receiver refused (a 4xx, often a 401 after a secret
    # change): nothing retries it, so it is as lost as a dead one until a person acts.
    Rule("stopped_events_critical", "stopped_events", "stopped_events", CRITICAL, ABOVE,
         0.0, 0.0, None, " events", for_evaluations=1),
    # The review queue's oldest item waited over a day (clears under 20 h): a wait, so judged
    # at once and whatever the sample. None (an empty queue) is no breach.
    Rule("review_age_warning", "review_age", "oldest_review_age_s", WARNING, ABOVE,
         86_400.0, 72_000.0, None, " s", for_evaluations=1),
    # A record due now waited over 15 min unclaimed (clears under 10): an age is already a
    # duration, so it fires at the first evaluation; N more would add N x 5 min of waiting.
    Rule("starvation_warning", "starvation", "oldest_due_age_s", WARNING, ABOVE,
         900.0, 600.0, None, " s", for_evaluations=1),
    # Ten or more wrong reviewer keys in 5 min: someone is guessing (sign-in pauses by
    # itself at 5 an address, 20 a tenant); clears under 3. At once, whatever the sample.
    Rule("signin_refusals_warning", "signin_refusals", "signin_refusals", WARNING, AT_LEAST,
         10.0, 3.0, None, " refusals", for_evaluations=1),
    # Automation over its error budget (metrics/drift.py; the threshold is the tenant's
    # max_auto_error_rate in %, 5 by default): WARNING when the estimate passes it, CRITICAL
    # when even the interval's lower bound does. Each clears at 0.8 x the target.
    Rule("auto_error_warning", "auto_error", "auto_error_pct", WARNING, ABOVE,
         AUTO_ERROR_PCT, 0.8 * AUTO_ERROR_PCT, "auto_reviews", "%"),
    Rule("auto_error_critical", "auto_error", "auto_error_low_pct", CRITICAL, ABOVE,
         AUTO_ERROR_PCT, 0.8 * AUTO_ERROR_PCT, "auto_reviews", "%"),
)  # fmt: skip
# Rules whose threshold is a tenant setting: no setting (or not a positive number), no rule.
# Today's spend only grows until 00:00 UTC, so it clears when the day turns or the budget
# is raised; the claim already skips the tenant, so people hear of it at once.
SETTING_RULES: tuple[tuple[str, Rule], ...] = (
    ("daily_budget_usd", Rule("budget_warning", "budget", "spend_today_usd", WARNING, AT_LEAST,
                              0.0, 0.0, None, " USD", for_evaluations=1)),
)  # fmt: skip

RUNBOOK: dict[str, str] = {
    "completeness": "Check the AI provider's health and the attempts' errors "
    "(`enrichment report {tenant}`); add workers; requeue stuck records with "
    "`celery -A workers call enrichment.requeue --args '[\"{tenant}\"]'`.",
    "quality": "Review recent model or prompt changes and the input data; "
    "look at the confidence histogram in the HTML report.",
    "backlog": "Add worker processes, or trigger processing now with "
    "`POST /api/enrichment/process/{tenant}`.",
    "failure_rate": "The AI's answers fail for these records (invalid output, a 400 or 413; "
    "outages and refused keys are deferred and page provider_down instead): read "
    "enrichment_attempts.error, or `enrichment show {tenant} <record>`.",
    "dead_events": "The tenant's webhook refused or never answered these events: fix the "
    "receiver (the errors are in `enrichment show {tenant} <record>`), then re-send with "
    "`celery -A workers call enrichment.redeliver --args '[\"{tenant}\"]'`.",
    "stopped_events": "The tenant's webhook refused these events with a 4xx and nothing "
    "retries them. `enrichment webhook log {tenant}` shows the answers: a 401 or 403 is "
    "almost always the signing secret (the receiver verifies with an old one: give it the "
    "current secret, or rotate with `enrichment webhook {tenant} --new-secret`, which keeps "
    "the old one signing for the overlap); `enrichment webhook test {tenant}` checks the fix; "
    "then re-send with "
    "`celery -A workers call enrichment.redeliver --args '[\"{tenant}\"]'`.",
    "review_age": "The review queue's oldest item waited over a day: work the queue "
    "(`GET /api/enrichment/reviews/{tenant}`, or the review page), deciding each item or "
    "requeueing it for the AI; add reviewers or lower the tenant's audit_rate if it keeps "
    "growing.",
    "starvation": "A due record waited over 15 min unclaimed. If the last sweep claimed "
    "none of the tenant's due records, it is held back: its in-flight cap "
    "(settings max_in_flight), its daily budget or its weight; else the fleet is behind: add "
    "workers (`enrichment status {tenant}` shows both).",
    "signin_refusals": "Wrong reviewer keys keep coming on the review page: someone may be "
    "guessing. `enrichment audit {tenant} --action review.signin_refused` lists the "
    "addresses; block them at the proxy. Sign-in pauses by itself per address and tenant; "
    "if a key may have leaked, `enrichment reviewer revoke {tenant} NAME` and add it anew.",
    "budget": "Today's AI spend reached the tenant's daily_budget_usd: the sweep claims "
    "nothing more for it until 00:00 UTC. Raise the budget in tenants.settings if the "
    "work must go on today, or check for a retry loop (`enrichment report {tenant}`).",
    "auto_error": "The people's audit reviews disagree with more of the AI's automated "
    "decisions than the tenant's error budget (max_auto_error_rate) allows. `enrichment eval "
    "--reviews {tenant}` shows which provider, model or prompt version drifted and the "
    "threshold the reviews now support; raise the tenant's threshold to it (`enrichment "
    "tenant set {tenant} confidence_threshold=T`) or turn it over to the fleet (`enrichment "
    "tenant set {tenant} auto_threshold=true`: the next refit moves it), and look for a "
    "model, prompt or traffic change. A CRITICAL means the "
    "lower bound is over the budget too: not noise.",
    "escalated": "Records used up their retries: decide them in the review queue "
    "(`GET /api/enrichment/reviews/{tenant}`), or requeue them for the AI with "
    "`celery -A workers call enrichment.requeue --args '[\"{tenant}\"]'`.",
}


@dataclass(frozen=True)
class AlertState:
    """The pure mirror of one `alerts` row."""

    metric: str
    severity: str
    state: str = "inactive"
    consecutive: int = 0
    value: float | None = None
    threshold: float | None = None
    active_since: datetime | None = None
    fired_at: datetime | None = None
    last_notified_at: datetime | None = None
    resolved_at: datetime | None = None


@dataclass(frozen=True)
class Notification:
    """One message to send: kind "firing" or "resolved". muted: a resolve during a silence,
    for the channels that hold an open incident only (`routing`)."""

    tenant: str
    kind: str
    metric: str
    severity: str
    value: float | None
    threshold: float | None
    unit: str
    since: datetime | None
    muted: bool = False


def rules_for(
    tenant_settings: Mapping[str, Any] | TenantSettings, fleet_error_rate: float | None = None
) -> tuple[Rule, ...]:
    """DEFAULT_RULES with the tenant's overrides (read through TenantSettings: a
    non-numeric override is ignored and logged there); the auto_error rules at the tenant's
    max_auto_error_rate, else `fleet_error_rate` (ENRICHMENT_MAX_AUTO_ERROR_RATE), else 5 %."""
    own = TenantSettings.parse(tenant_settings)
    from_settings = [_from_setting(rule, getattr(own, key)) for key, rule in SETTING_RULES]
    rules = (*DEFAULT_RULES, *(rule for rule in from_settings if rule is not None))
    target = own.max_auto_error_rate or fleet_error_rate
    rules = tuple(_error_budget(rule, target) for rule in rules)
    return tuple(_override(rule, own.alert_thresholds) for rule in rules)


def _error_budget(rule: Rule, target: float | None) -> Rule:
    """An auto_error rule at the error budget `target` (a rate; in % on the rule), if any."""
    if rule.metric != "auto_error" or target is None:
        return rule
    return replace(rule, threshold=100 * target, resolve=80 * target)


def _from_setting(rule: Rule, value: float | None) -> Rule | None:
    """The rule with its threshold (and bound) from a tenant setting, or None."""
    return replace(rule, threshold=value, resolve=value) if value and value > 0 else None


def _scaled_resolve(rule: Rule, threshold: float) -> float:
    """Without an explicit bound the deadband keeps its default proportion (1000/800 -> 10/8)."""
    if rule.threshold == 0:
        return threshold + rule.resolve
    return threshold * rule.resolve / rule.threshold


def _override(rule: Rule, overrides: Mapping[str, float]) -> Rule:
    threshold = overrides.get(rule.name)
    resolve = overrides.get(f"{rule.name}_resolve")
    if threshold is None and resolve is None:
        return rule
    new_threshold = rule.threshold if threshold is None else threshold
    new_resolve = _scaled_resolve(rule, new_threshold) if resolve is None else resolve
    wrong_side = new_resolve < new_threshold if rule.op == BELOW else new_resolve > new_threshold
    return replace(
        rule, threshold=new_threshold, resolve=new_threshold if wrong_side else new_resolve
    )


def holds(rule: Rule, value: float | None, sample: int | None, *, firing: bool, min_sample: int):
    """Is the rule's condition true? No data or too small a sample is "not true"."""
    if value is None or (rule.sample_field is not None and (sample or 0) < min_sample):
        return False
    bound = rule.resolve if firing else rule.threshold
    if rule.op == AT_LEAST:
        return value >= bound
    return value < bound if rule.op == BELOW else value > bound


def advance(
    state: AlertState, holding: bool, *, value: float | None, rule: Rule, for_n: int, now: datetime
) -> AlertState:
    """One evaluation's state transition (see the module docstring)."""
    state = replace(state, value=value, threshold=rule.threshold)
    if holding:
        return _advance_holding(state, for_n, now)
    return replace(_retired(state, now), consecutive=0)


def _advance_holding(state: AlertState, for_n: int, now: datetime) -> AlertState:
    if state.state == "firing":
        return replace(state, consecutive=state.consecutive + 1)
    starting = state.state != "pending"
    count = 1 if starting else state.consecutive + 1
    since = now if starting else state.active_since
    if count < for_n:
        return replace(state, state="pending", consecutive=count, active_since=since)
    # A new firing episode: its notice is owed whatever was sent before.
    return replace(
        state,
        state="firing",
        consecutive=count,
        active_since=since,
        fired_at=now,
        last_notified_at=None,
    )


def evaluate(
    states: dict[tuple[str, str], AlertState],
    snapshot: Any,
    rules: tuple[Rule, ...],
    policy: AlertPolicy,
    *,
    now: datetime,
) -> dict[tuple[str, str], AlertState]:
    """Advance every rule's state against one snapshot (any object with the rule fields)."""
    new = {key: _retired(old, now) for key, old in states.items()}
    for rule in rules:
        key = (rule.metric, rule.severity)
        old = states.get(key) or AlertState(rule.metric, rule.severity)
        value = getattr(snapshot, rule.field)
        sample = getattr(snapshot, rule.sample_field) if rule.sample_field else None
        ok = holds(rule, value, sample, firing=old.state == "firing", min_sample=policy.min_sample)
        for_n = rule.for_evaluations or policy.for_evaluations
        new[key] = advance(old, ok, value=value, rule=rule, for_n=for_n, now=now)
    return new


def _retired(state: AlertState, now: datetime) -> AlertState:
    """A cleared condition; also a state whose rule is gone (a tenant's budget removed)."""
    if state.state not in ("pending", "firing"):
        return state
    owed = state.state == "firing" or state.last_notified_at is not None
    return replace(
        state,
        state="resolved" if owed else "inactive",
        consecutive=0,
        resolved_at=now if owed else state.resolved_at,
    )


def _inhibited(key: tuple[str, str], states: dict[tuple[str, str], AlertState]) -> bool:
    metric, severity = key
    critical = states.get((metric, CRITICAL))
    return severity == WARNING and critical is not None and critical.state == "firing"


def _silenced(metric: str, silences: set[str | None]) -> bool:
    return None in silences or metric in silences


def plan(
    tenant: str,
    states: dict[tuple[str, str], AlertState],
    rules: tuple[Rule, ...],
    policy: AlertPolicy,
    *,
    silences: set[str | None],
    now: datetime,
) -> tuple[dict[tuple[str, str], AlertState], list[Notification]]:
    """Which notifications to send now, after silences and inhibition.

    silences: silenced metrics (None silences all of the tenant's). A resolved alert that
    was never notified goes quietly to inactive; one that is silenced yields a `muted` resolve.
    """
    units = {(r.metric, r.severity): r.unit for r in rules}
    units.update({k: "" for k in states.keys() - units.keys()})
    new, out = dict(states), []
    repeat = timedelta(seconds=policy.repeat_interval_s)
    for key, st in states.items():
        if st.state == "firing" and not _silenced(st.metric, silences):
            due = st.last_notified_at is None or now - st.last_notified_at >= repeat
            if due and not _inhibited(key, states):
                out.append(_note(tenant, st, "firing", units[key]))
        elif st.state == "resolved":
            if st.last_notified_at is None:
                new[key] = _quiet(st)
            else:
                muted = _silenced(st.metric, silences)
                out.append(_note(tenant, st, "resolved", units[key], muted=muted))
    return new, out


def _note(tenant: str, st: AlertState, kind: str, unit: str, *, muted=False) -> Notification:
    return Notification(
        tenant, kind, st.metric, st.severity, st.value, st.threshold, unit, st.active_since, muted
    )


def _quiet(st: AlertState) -> AlertState:
    return replace(
        st, state="inactive", consecutive=0, active_since=None, fired_at=None, last_notified_at=None
    )


def after_delivery(st: AlertState, kind: str, *, now: datetime) -> AlertState:
    """The state once a notification was delivered (or given up on for good)."""
    return replace(st, last_notified_at=now) if kind == "firing" else _quiet(st)
