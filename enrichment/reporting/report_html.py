"""The report for people: one self-contained HTML page an operations lead can keep open.

A status header that says what is wrong in plain words, the key figures, the confidence
histogram and two trends as inline SVG, then the escalated records, the AI against people
(review counts, calibration per provider, model and prompt version, a reliability plot and
the threshold advice) and the alerts with their reasons. No JavaScript and no CDN (see
`html_page`). Every value that comes from the database or from customer text is escaped.
"""

from __future__ import annotations

import re
from datetime import datetime
from html import escape

from enrichment.alerting import alerts
from enrichment.core import text
from enrichment.core.text import duration, number, plural
from enrichment.metrics.monitor import Snapshot
from enrichment.metrics.passes import BUCKET_EDGES
from enrichment.reporting import charts, words
from enrichment.reporting import html_page as ui
from enrichment.reporting.reports import Report, ThresholdView, TrendPoint
from enrichment.reviews.calibration import Calibration, GroupFigures

TEXT_SHOWN = 400  # characters of a reason or note; the JSON report has them whole


def _clip(text: str | None, empty: str = "—") -> str:
    if not text:
        return empty
    return text if len(text) <= TEXT_SHOWN else text[: TEXT_SHOWN - 1] + "…"


def _header(report: Report) -> str:
    h = report.health
    crossed = [t for t in h.thresholds if t.crossed]
    items = "".join(
        f"<li>{ui.tag(t.severity, t.severity)} {escape(_sentence(t.words))}: "
        f"now <strong>{escape(t.value_words)}</strong></li>"
        for t in crossed
    )
    items += "".join(
        f"<li>{ui.tag('critical', 'critical')} The AI provider is "
        f"<strong>{escape(line)}</strong></li>"
        for line in h.provider
    )
    return (
        f'<header class="banner"><div><span class="pill">'
        f"{escape(words.STATUS[h.status].upper())}</span></div>"
        f'<div class="what"><h1>Enrichment report: {escape(report.tenant)}</h1>'
        f"<p><strong>{escape(words.STATUS_SUMMARY[h.status])}</strong></p>"
        + (f"<ul>{items}</ul>" if items else "")
        + f'<p class="small muted">Measured {h.measured_at:%Y-%m-%d %H:%M:%S} UTC · '
        f"trends over the last {escape(duration(_span_s(report)))}</p></div></header>"
    )


def _span_s(report: Report) -> float:
    if not report.trend:
        return report.metrics.window_s
    return (report.health.measured_at - report.trend[0].taken_at).total_seconds()


def _cards(report: Report) -> str:
    """The key figures; a figure whose threshold is crossed is outlined in the status colour."""
    bad = {t.metric for t in report.health.thresholds if t.crossed}
    cards = _state_cards(report.metrics) + _flow_cards(report.metrics)
    body = "".join(ui.card(label, value, hint, bad=key in bad) for label, value, hint, key in cards)
    return f'<div class="cards">{body}</div>'


def _sentence(text: str) -> str:
    """First letter up, the rest as written ('AI' stays 'AI', unlike str.capitalize)."""
    return text[:1].upper() + text[1:]


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


def _histogram(report: Report) -> str:
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
    return _figure("AI confidence of labelled records", chart, note)


def _figure(title: str, chart: str, note: str) -> str:
    return (
        f"<figure><figcaption>{escape(title)}</figcaption>{chart}"
        f'<div class="note">{escape(note)}</div></figure>'
    )


def _series(trend: list[TrendPoint], field: str) -> list[tuple[datetime, float]]:
    return [(p.taken_at, getattr(p, field)) for p in trend if getattr(p, field) is not None]


def _trend(report: Report, field: str, title: str, unit: str) -> str:
    """The stored snapshots, ended by the live figure; the live figure alone when there
    are no snapshots yet (the monitor stores one per run)."""
    live = getattr(report.metrics, field)
    points = _series(report.trend, field)
    if live is not None and (not points or points[-1][0] < report.metrics.taken_at):
        points.append((report.metrics.taken_at, float(live)))
    y_max = 100 if unit == "%" else None
    if not points:
        return _figure(title, charts.svg(title, ""), "No data yet.")
    if len(points) < 2:
        chart = charts.level(points[0][1], points[0][0], label=title, unit=unit, y_max=y_max)
        return _figure(title, chart, "The live figure: no stored snapshot yet to draw a trend.")
    snaps = len(points) - 1
    note = f"{plural(snaps, 'stored snapshot')} and the live figure."
    return _figure(title, charts.line(points, label=title, unit=unit, y_max=y_max), note)


def _charts(report: Report) -> str:
    return (
        '<div class="grid three">'
        + _histogram(report)
        + _trend(report, "completeness_pct", "Completeness over time", "%")
        + _trend(report, "backlog_records", "Records waiting over time", "records")
        + "</div>"
    )


def _escalations(report: Report) -> str:
    total, shown = report.health.escalated_records, len(report.escalations)
    if not total:
        return ui.section("Escalated to a person", ui.empty("No record is escalated."))
    rows = [
        (
            e.external_id,
            f"{e.escalated_at:%Y-%m-%d %H:%M} UTC",
            e.reason_code,
            (escape(str(e.retry_count)), "num"),
            "—" if e.ai_label is None else f"{e.ai_label} ({number(e.ai_confidence, '', 2)})",
            (escape(_clip(e.escalation_reason, "no reason recorded")), "text"),
            (escape(_clip(e.notes)), "text"),
        )
        for e in report.escalations
    ]
    headers = ["Record", "Escalated", "Reason code", "Retries", "AI label", "Why", "Customer note"]
    note = (
        f"{plural(total, 'record')} used up their retries or failed for good, oldest first"
        + (f" ({shown} shown; the backlog API lists more)." if shown < total else ".")
        + " Review them, then requeue them."
    )
    return ui.section("Escalated to a person", ui.table(headers, rows), note=note)


def _alerts(report: Report) -> str:
    h = report.health
    if not h.alerts:
        return ui.section("Alerts", ui.empty("No alert is pending or firing."))
    rows = [
        (
            (ui.tag(a.severity, a.severity), ""),
            _sentence(a.words or a.metric),
            "firing" if a.state == "firing" else "pending (not yet sent)",
            a.value_words or number(a.value),
            "—" if a.since is None else f"{a.since:%Y-%m-%d %H:%M} UTC",
            (_runbook(a.metric, report.tenant), "text"),
        )
        for a in h.alerts
    ]
    headers = ["Severity", "What", "State", "Now", "Since", "What to do"]
    return ui.section("Alerts", ui.table(headers, rows))


def _notices(report: Report) -> str:
    """INFO: early signs, shown here and in the health route, never sent anywhere."""
    rows = [((ui.tag("info", "info"), ""), _sentence(n.words)) for n in report.health.notices]
    note = "Early signs, for information: never sent to Slack or PagerDuty, no status change."
    if not rows:
        return ui.section("Notices", ui.empty("No notice: nothing is trending the wrong way."))
    return ui.section("Notices", ui.table(["Severity", "What"], rows), note=note)


def _runbook(metric: str, tenant: str) -> str:
    """The alert's runbook line, escaped, with its `commands` set as code."""
    text = escape(alerts.RUNBOOK.get(metric, "").format(tenant=tenant))
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def _threshold_row(t: ThresholdView) -> tuple:
    if t.crossed:
        state = (ui.tag("crossed", t.severity), "")
    elif t.judged:
        state = (ui.tag("ok", "ok"), "")
    else:
        state = (escape(f"not judged: {t.note}"), "small muted")
    return (
        (ui.tag(t.severity, t.severity), ""),
        _sentence(t.words),
        (escape(t.value_words), "nowrap"),
        state,
    )


def _thresholds(report: Report) -> str:
    rows = [_threshold_row(t) for t in report.health.thresholds]
    note = (
        "The status is the worst severity crossed. Alerts are sent once a threshold holds "
        "on several monitor runs in a row; rate thresholds wait for enough data."
    )
    return ui.section(
        "How the status is decided", ui.table(["Severity", "Threshold", "Now", ""], rows), note=note
    )


def _integrity(report: Report) -> str:
    rows = []
    for key, c in report.metrics.integrity.items():
        verdict = words.integrity_verdict(c.get("ok"))
        rows.append(
            (
                words.integrity_name(key),
                words.integrity_value(key, c.get("value")),
                words.integrity_target(key, c.get("target")),
                (ui.tag(verdict, verdict if verdict in ("ok", "FAILING") else ""), ""),
            )
        )
    return ui.section("Data checks", ui.table(["Check", "Now", "Target", ""], rows))


def _actions(report: Report) -> str:
    acts = report.actions
    if acts is None or not acts.by_status:
        return ui.section("Automated actions", ui.empty("No automated action yet."))
    counts = ", ".join(f"{s.lower()} {n:,}" for s, n in sorted(acts.by_status.items()))
    rows = [
        (
            o.external_id,
            o.action,
            o.status,
            f"{o.reported_at:%Y-%m-%d %H:%M} UTC",
            (escape(_clip(o.note, "no note")), "text"),
        )
        for o in acts.reported
    ]
    table = ui.table(["Record", "Action", "Outcome", "Reported", "Note"], rows) if rows else ""
    note = f"By status: {counts}. Outcomes as the receiving systems reported them, latest first."
    return ui.section("Automated actions", table or ui.empty("No outcome reported yet."), note=note)


def _review_cards(report: Report) -> str:
    """The review queue from the snapshot, and how many reviews the figures rest on."""
    m, cal = report.metrics, report.calibration
    cards = [
        ("Review queue", plural(m.review_backlog, "record"),
         "escalations and audit samples waiting"),
        ("Oldest waiting", duration(m.oldest_review_age_s) if m.review_backlog else "none waiting",
         "in the review queue"),
        ("Resolved by people", plural(m.human_resolved_records, "record"),
         "a person's label is final"),
        ("Reviews compared", plural(cal.reviews if cal else 0, "review"),
         "latest per record, where the AI gave a label"),
    ]  # fmt: skip
    return '<div class="cards">' + "".join(ui.card(*c) for c in cards) + "</div>"


def _group_row(g: GroupFigures, *, overall: bool = False) -> tuple:
    sources = (g.provider, g.model, g.prompt_version)
    names = ("all", "", "") if overall else tuple(name or "—" for name in sources)
    return (
        *names,
        (f"{g.reviews:,}", "num"),
        (f"{g.accuracy:.3f}", "num"),
        (f"{g.ece:.3f}", "num"),
    )


def _calibration_table(cal: Calibration) -> str:
    rows = [_group_row(g) for g in cal.groups]
    if cal.overall is not None:
        rows.append(_group_row(cal.overall, overall=True))
    headers = ["Provider", "Model", "Prompt", "Reviews", "Accuracy", "ECE"]
    return ui.table(headers, rows)


def _reliability(cal: Calibration) -> str:
    bins = [(b.low, b.high, b.reviews, b.accuracy) for b in cal.bins]
    chart = charts.reliability(bins, label="Reliability: AI confidence against people")
    note = (
        "Per confidence bin, the share of reviewed records whose AI label a person kept, with "
        "the number of reviews above each bar. A calibrated AI follows the dashed diagonal."
    )
    return _figure("Reliability against people", chart, note)


def _calibration(report: Report) -> str:
    cal = report.calibration
    title = "Calibration against people"
    if cal is None or not cal.reviews:
        body = _review_cards(report) + ui.empty(
            "No review yet: the figures start with the first person's label."
        )
        return ui.section(title, body)
    advice = f'<p class="advice"><strong>Threshold advice:</strong> {escape(cal.advice.words)}.</p>'
    body = (
        _review_cards(report)
        + '<div class="grid" style="margin-top:.75rem">'
        + _reliability(cal)
        + f"<div>{_calibration_table(cal)}{advice}</div></div>"
    )
    note = (
        "The AI's label and confidence against the label a person gave (escalations and the "
        "random audit sample), per provider, model and prompt version. ECE: expected "
        "calibration error over 10 equal-width bins, 0 is perfect."
    )
    return ui.section(title, body, note=note)


def render(report: Report) -> str:
    """The whole page."""
    body = (
        _header(report)
        + _cards(report)
        + ui.section("Charts", _charts(report))
        + _escalations(report)
        + _calibration(report)
        + _actions(report)
        + _alerts(report)
        + _notices(report)
        + '<div class="grid">'
        + _thresholds(report)
        + _integrity(report)
        + "</div>"
        + "<footer>JSON of this page: "
        f"/api/enrichment/report/{escape(report.tenant)} · the records waiting: "
        f"/api/enrichment/backlog/{escape(report.tenant)}</footer>"
    )
    return ui.page(f"Enrichment report: {report.tenant}", body, status=report.health.status)
