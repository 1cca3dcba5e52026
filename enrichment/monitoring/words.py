"""Plain words for the monitoring views: what the terminal report and the HTML page say
instead of identifiers (`escalated_warning`, `stuck_null_over_1d`), and the number formats
they share (units, plural forms, durations).
"""

from __future__ import annotations

import re
import unicodedata

from enrichment.monitoring.alerts import AT_LEAST, BELOW, Rule

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


# CSI (colours, cursor moves), OSC (window title, hyperlinks; ended by BEL or ST or nothing)
# and the two-byte escapes. What is left of any other control character is dropped below.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]?|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-_])")
# Line and paragraph separators would break a line like a newline does.
_SPACES = {"\t", "\n", "\r", "\u2028", "\u2029", "\x0b", "\x0c"}
_DROPPED = {"Cc", "Cf", "Cs", "Co", "Cn"}  # controls, bidi overrides, surrogates, unassigned
FIELD_MAX = 200


def printable(text: object, limit: int = FIELD_MAX) -> str:
    """Untrusted text (customer notes, model output, receiver notes) as one printable line of
    at most `limit` characters, safe for a terminal: escapes and controls go ('' for None)."""
    if text is None:
        return ""
    raw = _ANSI.sub("", str(text))
    kept = "".join(
        " " if ch in _SPACES else ch
        for ch in raw
        if ch in _SPACES or unicodedata.category(ch) not in _DROPPED
    )
    line = " ".join(kept.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def plural(n: int | float, noun: str) -> str:
    """'1 record', '2 records', '1,500 records' (irregular plurals are not needed here)."""
    count = f"{n:,.0f}" if float(n).is_integer() else f"{n:,.1f}"
    return f"{count} {noun}" if n == 1 else f"{count} {noun}s"


def duration(seconds: float | None) -> str:
    """A duration in the unit that shows it: '0.4 ms', '12 ms', '3.5 s', '4.2 min', '1.5 h'."""
    if seconds is None:
        return "no data"
    seconds = max(seconds, 0.0)  # a clock a moment behind another is not negative time
    if seconds < 0.01:
        return f"{short(seconds * 1000)} ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{short(seconds)} s"
    if seconds < 7200:
        return f"{short(seconds / 60)} min"
    return f"{short(seconds / 3600)} h"


def short(value: float) -> str:
    """One decimal, without a trailing '.0' ('60 min', not '60.0 min')."""
    text = f"{value:,.1f}"
    return text[:-2] if text.endswith(".0") else text


def number(value: float | None, unit: str = "", digits: int = 1) -> str:
    """'40.0 %', or 'no data' for None (no data is not zero)."""
    return "no data" if value is None else f"{value:,.{digits}f}{unit}"


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
