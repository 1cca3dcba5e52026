"""`enrichment status TENANT` and `enrichment report TENANT`: the API's views in a terminal.

Exit codes, the same for both (scripts and cron can branch on them):
0 healthy or no data yet, 1 warning, 2 critical, 3 unknown tenant.
"""

from __future__ import annotations

import sys
from typing import Any

from enrichment.core import db, tenants
from enrichment.core.models import utcnow
from enrichment.core.settings import get_settings
from enrichment.core.text import duration, number, plural, printable, short
from enrichment.reporting import order_figures, reports, words
from enrichment.reviews import calibration

EXIT = {"healthy": 0, "no_data": 0, "warning": 1, "critical": 2}
UNKNOWN_TENANT = 3


def print_pairs(pairs: list[tuple[str, Any]]) -> None:
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        print(f"  {key:<{width}}  {value}")


def _crossed(h: reports.Health) -> str:
    """Crossed thresholds in plain words, each with the name a tenant override uses."""
    crossed = [t for t in h.thresholds if t.crossed]
    return "; ".join(f"{t.words} ({t.severity}: {t.name})" for t in crossed) or "none"


def print_health(h: reports.Health) -> None:
    print(f"{h.tenant}: {h.status.upper()}  (measured {h.measured_at:%Y-%m-%d %H:%M:%S} UTC)")
    for line in h.provider:  # the fleet's provider is paused: before everything else
        print(f"  AI provider {line}")
    print_pairs(
        [
            ("completeness", number(h.completeness_pct, " %")),
            ("backlog", plural(h.backlog_records, "record")),
            ("quality score", number(h.quality_score, " / 100")),
            ("failure rate", number(h.failure_rate_pct, " %")),
            ("escalated", plural(h.escalated_records, "record")),
            ("webhook events", f"stopped {h.stopped_events:,}, dead {h.dead_events:,}"),
            *(order_figures.words(h.orders) if h.orders else []),
            ("thresholds crossed", _crossed(h)),
        ]
    )
    for a in h.alerts:
        since = "" if a.since is None else f" since {a.since:%Y-%m-%d %H:%M} UTC"
        what = a.words or a.metric
        print(f"  alert {a.state}: {a.severity}: {what}, now {number(a.value)}{since}")
    for n in h.notices:
        print(f"  notice (info, not sent): {n.words}")


def _metric_pairs(m) -> list[tuple[str, str]]:
    return [
        ("enriched", f"{plural(round(m.records_per_hour * m.window_s / 3600), 'record')}"
                     f" ({short(m.records_per_hour)} per hour)"),
        ("AI time per record", f"{duration(m.avg_processing_time_s)} (mean, provider calls only)"),
        ("AI time in window", duration(m.processing_duration_s)),
        ("creation to enriched", f"{duration(m.time_to_enrich_s)} (mean)"),
        ("pipeline success", number(m.pipeline_success_pct, " %")),
        ("high confidence", number(m.high_confidence_pct, " %")),
        ("AI cost in window", f"{m.window_ai_cost_usd:.4f} USD (interactive"
                              f" {m.window_ai_cost_usd - m.window_batch_ai_cost_usd:.4f},"
                              f" batch {m.window_batch_ai_cost_usd:.4f})"),
        ("prompt cache hits", f"{number(m.cache_hit_pct, ' %')} of input tokens"),
        ("events undelivered", f"{m.undelivered_events:,} (stopped {m.stopped_events:,},"
                               f" dead {m.dead_events:,})"),
    ]  # fmt: skip


def _print_histogram(buckets: dict[str, int]) -> None:
    print("confidence distribution (records per confidence band):")
    top = max(buckets.values(), default=0) or 1
    for label, n in buckets.items():
        # A band with any record shows at least one mark, so 1 of 500 is not lost.
        bar = "#" * max(round(30 * n / top), 1 if n else 0)
        print(f"  {label}  {bar:<30} {n}")


def _print_integrity(integrity: dict[str, dict[str, Any]]) -> None:
    print("integrity checks:")
    for key, c in integrity.items():
        value = words.integrity_value(key, c["value"])
        verdict = words.integrity_verdict(c["ok"])
        target = words.integrity_target(key, c["target"])
        print(f"  {words.integrity_name(key)}: {value} ({target}) {verdict}")


def _print_escalations(r: reports.Report) -> None:
    total = r.health.escalated_records
    if not total:
        return
    shown = len(r.escalations)
    print(f"escalated to a person: {plural(total, 'record')} (oldest {shown} shown):")
    for e in r.escalations:
        reason = printable(e.escalation_reason) or "no reason recorded"
        print(f"  {e.external_id}  {e.escalated_at:%Y-%m-%d %H:%M} UTC  {reason}")


def _print_actions(r: reports.Report) -> None:
    if r.actions is None or not r.actions.by_status:
        return
    counts = ", ".join(f"{s.lower()} {n:,}" for s, n in sorted(r.actions.by_status.items()))
    print(f"automated actions: {counts}")
    for o in r.actions.reported:
        note = printable(o.note) or "no note"
        print(
            f"  {o.external_id}  {o.action}  {o.status}  {o.reported_at:%Y-%m-%d %H:%M} UTC  {note}"
        )


def _print_reviews(r: reports.Report) -> None:
    """The review queue (from the snapshot) and the AI against people's labels."""
    m = r.metrics
    oldest = f", oldest waiting {duration(m.oldest_review_age_s)}" if m.review_backlog else ""
    print(
        f"reviews: {plural(m.review_backlog, 'record')} in the queue{oldest}; "
        f"{plural(m.human_resolved_records, 'record')} resolved by people"
    )
    if r.calibration is None:
        return
    for line in calibration.table_lines(r.calibration, r.tenant):
        print(line)


def _print_thresholds(h: reports.Health) -> None:
    print("thresholds (the status is the worst one crossed):")
    for t in h.thresholds:
        state = "CROSSED" if t.crossed else "ok" if t.judged else f"not judged: {t.note}"
        print(f"  {t.severity:<8} {t.words} ({t.name}): now {t.value_words}, {state}")


def print_report(r: reports.Report) -> None:
    print_health(r.health)
    m = r.metrics
    print(f"metrics over the last {duration(m.window_s)}:")
    print_pairs(_metric_pairs(m))
    _print_histogram(m.confidence_buckets)
    _print_integrity(m.integrity)
    _print_escalations(r)
    _print_actions(r)
    _print_reviews(r)
    _print_thresholds(r.health)


def _with_tenant(name: str, show) -> int:
    settings = get_settings()
    with db.session_factory(settings.database_url)() as session:
        tenant = tenants.by_name(session, name)
        if tenant is None:
            print(f"unknown tenant {name!r}", file=sys.stderr)
            return UNKNOWN_TENANT
        return show(session, tenant, settings)


def status(tenant: str) -> int:
    """Print the tenant's health. Exit 0 healthy or no data, 1 warning, 2 critical,
    3 unknown tenant."""

    def show(session, t, settings) -> int:
        h = reports.health(session, t, settings, now=utcnow())
        print_health(h)
        return EXIT[h.status]

    return _with_tenant(tenant, show)


def report(tenant: str) -> int:
    """Print the tenant's full report. Exit codes as `status`: 0 healthy or no data,
    1 warning, 2 critical, 3 unknown tenant."""

    def show(session, t, settings) -> int:
        r = reports.report(session, t, settings, now=utcnow())
        print_report(r)
        return EXIT[r.health.status]

    return _with_tenant(tenant, show)
