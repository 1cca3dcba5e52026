"""The report for people: one self-contained HTML page an operations lead can keep open.

A status header that says what is wrong in plain words, the key figures, the confidence
histogram and two trends as inline SVG, then the escalated records, the AI against people
(`calibration_view`: review counts, calibration per provider, model and prompt version, a
reliability plot and the threshold advice), the automated actions, the alerts with their
reasons, the notices and how the status is decided. No JavaScript and no CDN (see `pages`).

Here the page is prepared as words and numbers (`view`, built from a `Report`);
`templates/report.html` lays it out, and autoescape escapes every value that comes from the
database or from customer text. The charts are SVG from `charts`, which escapes what it draws.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from enrichment.alerting import alerts
from enrichment.core import text
from enrichment.core.text import duration, number, plural
from enrichment.metrics.monitor import Snapshot
from enrichment.metrics.passes import BUCKET_EDGES
from enrichment.reporting import calibration_view, charts, order_figures, pages, words
from enrichment.reporting.pages import Card, Figure, Part
from enrichment.reporting.reports import Report, ThresholdView, TrendPoint

TEXT_SHOWN = 400  # characters of a reason or note; the JSON report has them whole


class ThresholdRow(NamedTuple):
    severity: str
    words: str
    now: str
    crossed: bool
    judged: bool
    note: str


class Banner(NamedTuple):
    """The header: `status` as its pill says it ('WARNING'), what is crossed, the provider's
    paused breakers in words, when it was measured and the trends' span."""

    status: str
    summary: str
    crossed: list[ThresholdRow]
    provider: list[str]
    measured_at: datetime
    span: str


class EscalationRow(NamedTuple):
    external_id: str
    escalated_at: datetime
    reason_code: str
    retries: int
    ai_label: str
    why: str
    note: str


class ActionRow(NamedTuple):
    external_id: str
    action: str
    status: str
    reported_at: datetime
    note: str


class AlertRow(NamedTuple):
    """`todo`: the runbook line as (text, is a command) pieces; commands show as code."""

    severity: str
    what: str
    state: str
    now: str
    since: datetime | None
    todo: list[tuple[str, bool]]


class CheckRow(NamedTuple):
    """A data check; `kind` colours the verdict (ok, FAILING, or '' for no data)."""

    name: str
    now: str
    target: str
    verdict: str
    kind: str


@dataclass(frozen=True)
class ReportPage:
    """Everything `report.html` shows, in the order it shows it."""

    tenant: str
    colour: str
    banner: Banner
    cards: list[Card]
    figures: list[Figure]
    escalations: Part
    calibration: calibration_view.CalibrationPart
    actions: Part
    alerts: Part
    notices: Part
    thresholds: Part
    checks: Part


def render(report: Report, *, nonce: str | None = None) -> str:
    """The whole page; `nonce`: the CSP nonce its <style> carries (the API's, per response)."""
    extra = {"nonce": nonce} if nonce else {}
    return pages.render("report.html", page=view(report), **extra)


def view(report: Report) -> ReportPage:
    """The page's words and numbers, from the report."""
    status = report.health.status
    return ReportPage(
        tenant=report.tenant,
        colour=pages.COLOURS.get(status, pages.COLOURS["no_data"]),
        banner=_banner(report),
        cards=_cards(report),
        figures=[
            _histogram(report),
            _trend(report, "completeness_pct", "Completeness over time", "%"),
            _trend(report, "backlog_records", "Records waiting over time", "records"),
        ],
        escalations=_escalations(report),
        calibration=calibration_view.part(report),
        actions=_actions(report),
        alerts=_alerts(report),
        notices=_notices(report),
        thresholds=_thresholds(report),
        checks=_checks(report),
    )


def _clip(text: str | None, empty: str = "—") -> str:
    if not text:
        return empty
    return text if len(text) <= TEXT_SHOWN else text[: TEXT_SHOWN - 1] + "…"


def _sentence(text: str) -> str:
    """First letter up, the rest as written ('AI' stays 'AI', unlike str.capitalize)."""
    return text[:1].upper() + text[1:]


def _banner(report: Report) -> Banner:
    h = report.health
    crossed = [_threshold_row(t) for t in h.thresholds if t.crossed]
    return Banner(
        status=words.STATUS[h.status].upper(),
        summary=words.STATUS_SUMMARY[h.status],
        crossed=crossed,
        provider=list(h.provider),
        measured_at=h.measured_at,
        span=duration(_span_s(report)),
    )


def _span_s(report: Report) -> float:
    if not report.trend:
        return report.metrics.window_s
    return (report.health.measured_at - report.trend[0].taken_at).total_seconds()


def _cards(report: Report) -> list[Card]:
    """The key figures; a figure whose threshold is crossed is outlined in the status colour."""
    bad = {t.metric for t in report.health.thresholds if t.crossed}
    cards = _state_cards(report.metrics) + _flow_cards(report.metrics)
    cards += order_figures.cards(report.health.orders)
    return [Card(label, value, hint, key in bad) for label, value, hint, key in cards]


def _state_cards(m: Snapshot) -> list[tuple[str, str, str, str]]:
    enriched = f"{m.enriched_records:,} of {plural(m.total_records, 'record')} enriched"
    return [
        ("Completeness", number(m.completeness_pct, " %"), enriched, "completeness"),
        ("Waiting", plural(m.backlog_records, "record"), "not enriched, not escalated", "backlog"),
        ("Escalated", plural(m.escalated_records, "record"), "waiting for a person", "escalated"),
        (
            "Quality score",
            number(m.quality_score, " / 100"),
            "confidence, completeness, success",
            "quality",
        ),
        (
            "Webhook events not delivered",
            f"{m.stopped_events:,} stopped, {m.dead_events:,} dead",
            f"refused or given up on; {m.undelivered_events:,} waiting",
            "stopped_events" if m.stopped_events else "dead_events",
        ),
    ]


def _flow_cards(m: Snapshot) -> list[tuple[str, str, str, str]]:
    window = duration(m.window_s)
    tried = f"{m.window_failed_attempts:,} of {plural(m.window_attempts, 'AI attempt')}"
    enriched = plural(round(m.records_per_hour * m.window_s / 3600), "record")
    return [
        (
            "Failure rate",
            number(m.failure_rate_pct, " %"),
            f"{tried}, last {window}",
            "failure_rate",
        ),
        (f"Enriched, last {window}", enriched, f"{text.short(m.records_per_hour)} per hour", ""),
        ("Creation to enriched", duration(m.time_to_enrich_s), "mean, those records", ""),
        ("AI time per record", duration(m.avg_processing_time_s),
         f"mean of provider calls; cost {m.window_ai_cost_usd:,.4f} USD", ""),
        ("AI cost by path", f"{m.window_ai_cost_usd - m.window_batch_ai_cost_usd:,.4f} USD",
         f"interactive; batch {m.window_batch_ai_cost_usd:,.4f} USD;"
         f" cache hits {number(m.cache_hit_pct, ' %')} of input tokens", ""),
    ]  # fmt: skip


def _histogram(report: Report) -> Figure:
    m, threshold = report.metrics, report.confidence_threshold
    chart = charts.histogram(
        m.confidence_buckets, list(BUCKET_EDGES), marker=threshold, label="Confidence histogram"
    )
    note = (
        f"{plural(m.classified_records, 'labelled record')}. Orange bars are below the "
        f"confidence threshold ({threshold:g}): those labels are checked again later."
        if threshold is not None
        else f"{plural(m.classified_records, 'labelled record')}."
    )
    return Figure("AI confidence of labelled records", chart, note)


def _series(trend: list[TrendPoint], field: str) -> list[tuple[datetime, float]]:
    return [(p.taken_at, getattr(p, field)) for p in trend if getattr(p, field) is not None]


def _trend(report: Report, field: str, title: str, unit: str) -> Figure:
    """The stored snapshots, ended by the live figure; the live figure alone when there
    are no snapshots yet (the monitor stores one per run)."""
    live = getattr(report.metrics, field)
    points = _series(report.trend, field)
    if live is not None and (not points or points[-1][0] < report.metrics.taken_at):
        points.append((report.metrics.taken_at, float(live)))
    y_max = 100 if unit == "%" else None
    if not points:
        return Figure(title, charts.svg(title, ""), "No data yet.")
    if len(points) < 2:
        chart = charts.level(points[0][1], points[0][0], label=title, unit=unit, y_max=y_max)
        return Figure(title, chart, "The live figure: no stored snapshot yet to draw a trend.")
    note = f"{plural(len(points) - 1, 'stored snapshot')} and the live figure."
    return Figure(title, charts.line(points, label=title, unit=unit, y_max=y_max), note)


def _escalations(report: Report) -> Part:
    total, shown = report.health.escalated_records, len(report.escalations)
    if not total:
        return Part([], empty="No record is escalated.")
    rows = [
        EscalationRow(
            e.external_id,
            e.escalated_at,
            e.reason_code,
            e.retry_count,
            "—" if e.ai_label is None else f"{e.ai_label} ({number(e.ai_confidence, '', 2)})",
            _clip(e.escalation_reason, "no reason recorded"),
            _clip(e.notes),
        )
        for e in report.escalations
    ]
    note = (
        f"{plural(total, 'record')} used up their retries or failed for good, oldest first"
        + (f" ({shown} shown; the backlog API lists more)." if shown < total else ".")
        + " Review them, then requeue them."
    )
    return Part(rows, note)


def _alerts(report: Report) -> Part:
    rows = [
        AlertRow(
            a.severity,
            _sentence(a.words or a.metric),
            "firing" if a.state == "firing" else "pending (not yet sent)",
            a.value_words or number(a.value),
            a.since,
            _runbook(a.metric, report.tenant),
        )
        for a in report.health.alerts
    ]
    return Part(rows, empty="No alert is pending or firing.")


def _runbook(metric: str, tenant: str) -> list[tuple[str, bool]]:
    """The alert's runbook line in pieces: the text between `backticks` is a command."""
    line = alerts.RUNBOOK.get(metric, "").format(tenant=tenant)
    return [(piece, i % 2 == 1) for i, piece in enumerate(re.split(r"`([^`]+)`", line)) if piece]


def _notices(report: Report) -> Part:
    """INFO: early signs, shown here and in the health route, never sent anywhere."""
    rows = [_sentence(n.words) for n in report.health.notices]
    if not rows:
        return Part([], empty="No notice: nothing is trending the wrong way.")
    note = "Early signs, for information: never sent to Slack or PagerDuty, no status change."
    return Part(rows, note)


def _threshold_row(t: ThresholdView) -> ThresholdRow:
    return ThresholdRow(t.severity, _sentence(t.words), t.value_words, t.crossed, t.judged, t.note)


def _thresholds(report: Report) -> Part:
    note = (
        "The status is the worst severity crossed. Alerts are sent once a threshold holds "
        "on several monitor runs in a row; rate thresholds wait for enough data."
    )
    return Part([_threshold_row(t) for t in report.health.thresholds], note)


def _check_row(key: str, check: dict) -> CheckRow:
    verdict = words.integrity_verdict(check.get("ok"))
    return CheckRow(
        words.integrity_name(key),
        words.integrity_value(key, check.get("value")),
        words.integrity_target(key, check.get("target")),
        verdict,
        verdict if verdict in ("ok", "FAILING") else "",
    )


def _checks(report: Report) -> Part:
    return Part([_check_row(key, c) for key, c in report.metrics.integrity.items()])


def _actions(report: Report) -> Part:
    acts = report.actions
    if acts is None or not acts.by_status:
        return Part([], empty="No automated action yet.")
    counts = ", ".join(f"{s.lower()} {n:,}" for s, n in sorted(acts.by_status.items()))
    rows = [
        ActionRow(o.external_id, o.action, o.status, o.reported_at, _clip(o.note, "no note"))
        for o in acts.reported
    ]
    note = f"By status: {counts}. Outcomes as the receiving systems reported them, latest first."
    return Part(rows, note, empty="No outcome reported yet.")
