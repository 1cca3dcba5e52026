"""Plain words for the report and its pages: what the terminal report and the HTML page say
instead of identifiers (`escalated_warning`, `stuck_null_over_1d`), and the number formats
they share (units, plural forms, durations).
"""

from __future__ import annotations

from enrichment.alerting.alerts import AT_LEAST, BELOW, Rule
from enrichment.core.text import duration, number, plural

STATUS = {
    "healthy": "Healthy",
    "warning": "Warning",
    "critical": "Critical",
    "no_data": "No data yet",
}
STATUS_SUMMARY = {
    "healthy": "No threshold is crossed.",
    "warning": "A warning threshold is crossed: someone should look today.",
    "critical": "A critical threshold is crossed: act now.",
    "no_data": "This tenant has no records yet.",
}
# What each alert metric measures, as a person would say it.
SUBJECT = {
    "completeness": "completeness",
    "quality": "quality score",
    "backlog": "records waiting for enrichment",
    "failure_rate": "failure rate of AI attempts",
    "escalated": "records escalated to a person",
    "review_age": "wait of the oldest review item",
    "stopped_events": "webhook events refused by the receiver",
    "signin_refusals": "wrong reviewer keys in 5 min",
    "auto_error": "error rate of automated decisions (audit reviews)",
    "starvation": "wait of the oldest record due for enrichment",
    "budget": "AI spend today",
}
# What a rate threshold needs enough of before it is judged (the policy's min_sample).
SAMPLE = {"total_records": "records", "window_attempts": "AI attempts in the window"}
UNIT = {"%": " %", "/100": " / 100", " records": ""}
INTEGRITY = {
    "stuck_null_over_1d": "Records still without an AI label after a day",
    "high_confidence_rate": "Labelled records at or above the confidence threshold",
    "retry_count_above_max": "Records retried more often than the retry limit",
}
INTEGRITY_UNIT = {"stuck_null_over_1d": "record", "retry_count_above_max": "record"}


def threshold(rule: Rule) -> str:
    """A rule in plain words: 'completeness under 70 %', 'more than 0 records escalated
    to a person'."""
    subject = SUBJECT.get(rule.metric, rule.metric.replace("_", " "))
    if rule.unit == " records":
        side = "fewer than" if rule.op == BELOW else "more than"
        return f"{side} {rule.threshold:,g} {subject}"
    side = "under" if rule.op == BELOW else "at or over" if rule.op == AT_LEAST else "over"
    return f"{subject} {side} {_amount(rule, rule.threshold)}"


def _amount(rule: Rule, value: float) -> str:
    """A threshold with its unit: '15 min' for seconds, '$25.00' for dollars, '70 %'."""
    if rule.unit == " s":
        return duration(value)
    if rule.unit == " USD":
        return f"${value:,.2f}"
    return f"{value:,g}{UNIT.get(rule.unit, rule.unit)}"


def not_judged(rule: Rule, value: float | None, sample: int | None, min_sample: int) -> str:
    """Why a threshold is not judged yet ('' when it is)."""
    if value is None:
        return "no data yet"
    if rule.sample_field is None or (sample or 0) >= min_sample:
        return ""
    what = SAMPLE.get(rule.sample_field, rule.sample_field)
    return f"needs {min_sample:,} {what}, has {sample or 0:,}"


def metric_value(rule: Rule, value: float | None) -> str:
    """A rule's measured value with its unit ('12 records', '61.3 / 100')."""
    if value is None:
        return "no data"
    if rule.unit == " records":
        return plural(value, "record")
    if rule.unit in (" s", " USD"):
        return _amount(rule, value)
    return number(value, UNIT.get(rule.unit, rule.unit))


def integrity_name(key: str) -> str:
    return INTEGRITY.get(key, key.replace("_", " "))


def integrity_value(key: str, value: float | None) -> str:
    noun = INTEGRITY_UNIT.get(key)
    if value is None:
        return "no data"
    return plural(value, noun) if noun else number(value, " %")


def integrity_target(key: str, target: float | None) -> str:
    if key in INTEGRITY_UNIT:
        return f"target {target:,g}"
    return f"target at least {target:,g} %"


def integrity_verdict(ok: bool | None) -> str:
    return "no data yet" if ok is None else "ok" if ok else "FAILING"
