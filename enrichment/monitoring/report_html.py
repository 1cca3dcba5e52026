"""The report for people: one self-contained HTML page with inline SVG plots.

No JavaScript and no CDN: the page renders offline and from a mail attachment. Every value
that comes from the database is escaped.
"""

from __future__ import annotations

from datetime import datetime
from html import escape

from enrichment.monitoring.reports import Report, TrendPoint

WIDTH, HEIGHT, PAD = 560, 200, 32
COLOURS = {"healthy": "#2e7d32", "warning": "#ef6c00", "critical": "#c62828", "no_data": "#616161"}


def _fmt(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}{unit}"


def bars_svg(counts: dict[str, int], *, title: str) -> str:
    """A bar chart of `counts` (label -> count), in the order given."""
    n = max(len(counts), 1)
    top = max(counts.values(), default=0) or 1
    step = (WIDTH - 2 * PAD) / n
    parts = []
    for i, (label, count) in enumerate(counts.items()):
        h = (HEIGHT - 2 * PAD) * count / top
        x, y = PAD + i * step, HEIGHT - PAD - h
        parts.append(
            f'<rect class="bar" x="{x + 2:.1f}" y="{y:.1f}" width="{step - 4:.1f}" '
            f'height="{h:.1f}" fill="#1565c0"><title>{escape(label)}: {count}</title></rect>'
            f'<text x="{x + step / 2:.1f}" y="{HEIGHT - PAD + 14}" font-size="9" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    return _svg(title, "".join(parts))


def line_svg(points: list[tuple[datetime, float]], *, title: str, y_max: float | None = None):
    """A line over time; y from 0 to `y_max` (default: the largest value)."""
    if len(points) < 2:
        return _svg(title, f'<text x="{PAD}" y="{HEIGHT / 2}">not enough snapshots yet</text>')
    t0, t1 = points[0][0].timestamp(), points[-1][0].timestamp()
    top = y_max or max(v for _, v in points) or 1.0
    xy = [
        (
            PAD + (WIDTH - 2 * PAD) * (t.timestamp() - t0) / ((t1 - t0) or 1.0),
            HEIGHT - PAD - (HEIGHT - 2 * PAD) * v / top,
        )
        for t, v in points
    ]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    axis = (
        f'<text x="{PAD}" y="{HEIGHT - 8}" font-size="9">{points[0][0]:%m-%d %H:%M}</text>'
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 8}" font-size="9" text-anchor="end">'
        f"{points[-1][0]:%m-%d %H:%M}</text>"
        f'<text x="4" y="{PAD}" font-size="9">{top:,.0f}</text>'
    )
    line = f'<polyline class="line" fill="none" stroke="#1565c0" stroke-width="2" points="{path}"/>'
    return _svg(title, line + axis)


def _svg(title: str, body: str) -> str:
    return (
        f"<figure><figcaption>{escape(title)}</figcaption>"
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{escape(title)}">'
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
        f'stroke="#999"/>{body}</svg></figure>'
    )


def _series(trend: list[TrendPoint], field: str) -> list[tuple[datetime, float]]:
    return [(p.taken_at, getattr(p, field)) for p in trend if getattr(p, field) is not None]


def _rows(report: Report) -> list[tuple[str, str]]:
    m = report.metrics
    return [
        ("Completeness", _fmt(m.completeness_pct, " %")),
        ("Backlog", f"{m.backlog_records:,} records"),
        ("Escalated", f"{m.escalated_records:,} records"),
        ("Quality score", _fmt(m.quality_score, " / 100")),
        ("High-confidence rate", _fmt(m.high_confidence_pct, " %")),
        ("Failure rate (window)", _fmt(m.failure_rate_pct, " %")),
        ("Pipeline success (window)", _fmt(m.pipeline_success_pct, " %")),
        ("Records per hour", _fmt(m.records_per_hour)),
        ("Avg processing time per record", _fmt(m.avg_processing_time_s, " s", 2)),
        ("Creation to enriched (mean)", _fmt(m.time_to_enrich_s, " s", 0)),
        ("AI cost (window)", _fmt(m.window_ai_cost_usd, " USD", 4)),
    ]


def _table(rows: list[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def _integrity(report: Report) -> str:
    rows = [
        (name, f"{_fmt(r.get('value'))} (target {r.get('target')}): "
         f"{'n/a' if r.get('ok') is None else 'ok' if r['ok'] else 'FAILING'}")
        for name, r in report.metrics.integrity.items()
    ]  # fmt: skip
    return _table(rows)


def render(report: Report) -> str:
    """The whole page."""
    h = report.health
    colour = COLOURS[h.status]
    plots = (
        bars_svg(report.metrics.confidence_buckets, title="Confidence distribution (records)")
        + line_svg(_series(report.trend, "completeness_pct"), title="Completeness %", y_max=100)
        + line_svg(_series(report.trend, "backlog_records"), title="Backlog (records)")
    )
    problems = ", ".join(h.problems) or "none"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Enrichment report: {escape(report.tenant)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto}}
th{{text-align:left;padding-right:2rem}} .status{{color:{colour};font-weight:bold}}
figure{{display:inline-block;margin:1rem}}</style></head><body>
<h1>Enrichment report: {escape(report.tenant)}</h1>
<p>Status: <span class="status">{escape(h.status)}</span> · thresholds crossed:
{escape(problems)} · measured {h.measured_at:%Y-%m-%d %H:%M:%S} UTC</p>
{_table(_rows(report))}
<h2>Data integrity</h2>{_integrity(report)}
<h2>Plots</h2>{plots}
</body></html>"""
