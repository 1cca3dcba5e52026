"""`enrichment status TENANT` and `enrichment report TENANT`: the API's views in a terminal.

Exit codes (scripts and cron can branch on them): 0 healthy or no data yet, 1 warning,
2 critical, 3 unknown tenant.
"""

from __future__ import annotations

import sys
from typing import Any

from enrichment.core import db, tenants
from enrichment.core.models import utcnow
from enrichment.core.settings import get_settings
from enrichment.monitoring import reports

EXIT = {"healthy": 0, "no_data": 0, "warning": 1, "critical": 2}
UNKNOWN_TENANT = 3


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "no data"
    return f"{value:,.1f}{unit}" if isinstance(value, float) else f"{value:,}{unit}"


def _print_pairs(pairs: list[tuple[str, Any]]) -> None:
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        print(f"  {key:<{width}}  {value}")


def print_health(h: reports.Health) -> None:
    print(f"{h.tenant}: {h.status.upper()}  (measured {h.measured_at:%Y-%m-%d %H:%M:%S} UTC)")
    _print_pairs(
        [
            ("completeness", _fmt(h.completeness_pct, " %")),
            ("backlog", _fmt(h.backlog_records, " records")),
            ("quality score", _fmt(h.quality_score, " / 100")),
            ("failure rate", _fmt(h.failure_rate_pct, " %")),
            ("escalated", _fmt(h.escalated_records, " records")),
            ("thresholds crossed", ", ".join(h.problems) or "none"),
        ]
    )
    for a in h.alerts:
        print(f"  alert {a.state}: {a.severity} {a.metric} = {_fmt(a.value)} (since {a.since})")


def print_report(r: reports.Report) -> None:
    print_health(r.health)
    m = r.metrics
    print(f"metrics (window {m.window_s:.0f} s):")
    _print_pairs(
        [
            ("records per hour", _fmt(m.records_per_hour)),
            ("avg processing time", _fmt(m.avg_processing_time_s, " s")),
            ("AI time in window", _fmt(m.processing_duration_s, " s")),
            ("pipeline success", _fmt(m.pipeline_success_pct, " %")),
            ("high confidence", _fmt(m.high_confidence_pct, " %")),
            ("AI cost in window", f"{m.window_ai_cost_usd:.4f} USD"),
        ]
    )
    print("confidence distribution:")
    top = max(m.confidence_buckets.values(), default=0) or 1
    for label, n in m.confidence_buckets.items():
        print(f"  {label}  {'#' * round(30 * n / top):<30} {n}")
    print("integrity checks:")
    for name, c in m.integrity.items():
        ok = "n/a" if c["ok"] is None else "ok" if c["ok"] else "FAILING"
        print(f"  {name}: {_fmt(c['value'])} (target {c['target']}) {ok}")


def _with_tenant(name: str, show) -> int:
    settings = get_settings()
    with db.session_factory(settings.database_url)() as session:
        tenant = tenants.by_name(session, name)
        if tenant is None:
            print(f"unknown tenant {name!r}", file=sys.stderr)
            return UNKNOWN_TENANT
        return show(session, tenant, settings)


def status(tenant: str) -> int:
    """Print the tenant's health; exit code by status (see the module docstring)."""

    def show(session, t, settings) -> int:
        h = reports.health(session, t, settings, now=utcnow())
        print_health(h)
        return EXIT[h.status]

    return _with_tenant(tenant, show)


def report(tenant: str) -> int:
    """Print the tenant's full report; exit code by status, like `status`."""

    def show(session, t, settings) -> int:
        r = reports.report(session, t, settings, now=utcnow())
        print_report(r)
        return EXIT[r.health.status]

    return _with_tenant(tenant, show)
