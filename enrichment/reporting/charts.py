"""Inline SVG charts with labelled axes: a histogram, a line over time, a reliability plot.

The SVGs scale to their box (viewBox, width 100%), so a row of charts fills the page at
any width. Every label is escaped; numbers are formatted here. So a chart is trusted markup
(`Markup`) that a page template takes as it is.
"""

from __future__ import annotations

import math
from datetime import datetime
from html import escape

from markupsafe import Markup

from enrichment.reporting.pages import COLOURS

W, H = 400, 240
LEFT, RIGHT, TOP, BOTTOM = 46, 14, 22, 46
PLOT_W, PLOT_H = W - LEFT - RIGHT, H - TOP - BOTTOM
MIN_BAR_PX = 5  # a band with 1 record out of 500 must still be a visible bar


def nice_ticks(top: float, *, most: int = 5) -> list[float]:
    """0 to at least `top` in 1-2-5 steps, at most `most` + 1 ticks (top <= 0: [0, 1])."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / most
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    if top >= 1 and step < 1:
        step = 1.0  # counts: no 0.5-record gridlines
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def _y(value: float, top: float) -> float:
    return TOP + PLOT_H - PLOT_H * value / top


def _num(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _y_axis(ticks: list[float], title: str) -> str:
    top = ticks[-1]
    parts = [
        f'<line x1="{LEFT}" y1="{_y(t, top):.1f}" x2="{W - RIGHT}" y2="{_y(t, top):.1f}" '
        f'stroke="{COLOURS["rule"]}" stroke-width="1"/>'
        f'<text x="{LEFT - 6}" y="{_y(t, top) + 4:.1f}" font-size="11" text-anchor="end" '
        f'fill="{COLOURS["muted"]}">{_num(t)}</text>'
        for t in ticks
    ]
    parts.append(
        f'<text transform="translate(12 {TOP + PLOT_H / 2:.0f}) rotate(-90)" font-size="11" '
        f'text-anchor="middle" fill="{COLOURS["muted"]}">{escape(title)}</text>'
    )
    return "".join(parts)


def _x_title(title: str) -> str:
    return (
        f'<text x="{LEFT + PLOT_W / 2:.0f}" y="{H - 6}" font-size="11" text-anchor="middle" '
        f'fill="{COLOURS["muted"]}">{escape(title)}</text>'
    )


def svg(label: str, body: str) -> Markup:
    """The SVG element around a chart's body (built here, every text in it escaped), with
    the plot's base line."""
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" '
        f'aria-label="{escape(label)}">{body}'
        f'<line x1="{LEFT}" y1="{TOP + PLOT_H}" x2="{W - RIGHT}" y2="{TOP + PLOT_H}" '
        f'stroke="{COLOURS["muted"]}"/></svg>'
    )


def histogram(
    counts: dict[str, int], edges: list[float], *, marker: float | None, label: str
) -> Markup:
    """Bars of `counts` (label -> records) between `edges`; a dashed line at `marker`.

    Bars left of the marker are drawn in the low-confidence colour. Every non-empty bar is at
    least MIN_BAR_PX high and has its count printed above it.
    """
    ticks = nice_ticks(max(counts.values(), default=0))
    step = PLOT_W / max(len(counts), 1)
    bars = [
        _bar(i * step, step, n, ticks[-1], low=marker is not None and edges[i + 1] <= marker)
        + f"<title>{escape(name)}: {n}</title></rect>"
        + _count_label(i * step, step, n, ticks[-1])
        for i, (name, n) in enumerate(counts.items())
    ]
    x_ticks = "".join(
        _x_tick(LEFT + PLOT_W * i / (len(edges) - 1), f"{e:g}") for i, e in enumerate(edges)
    )
    body = _y_axis(ticks, "records") + "".join(bars) + x_ticks + _x_title("AI confidence")
    return svg(label, body + _marker(marker))


def _bar(x0: float, step: float, n: int, top: float, *, low: bool) -> str:
    h = 0.0 if n == 0 else max(PLOT_H * n / top, MIN_BAR_PX)
    colour = COLOURS["low"] if low else COLOURS["accent"]
    return (
        f'<rect class="bar" x="{LEFT + x0 + 3:.1f}" y="{TOP + PLOT_H - h:.1f}" '
        f'width="{step - 6:.1f}" height="{h:.1f}" fill="{colour}">'
    )


def _count_label(x0: float, step: float, n: int, top: float) -> str:
    if n == 0:
        return ""
    y = TOP + PLOT_H - max(PLOT_H * n / top, MIN_BAR_PX) - 5
    return (
        f'<text class="count" x="{LEFT + x0 + step / 2:.1f}" y="{y:.1f}" font-size="11" '
        f'font-weight="600" text-anchor="middle" fill="{COLOURS["ink"]}">{n:,}</text>'
    )


def _x_tick(x: float, text: str, anchor: str = "middle") -> str:
    return (
        f'<line x1="{x:.1f}" y1="{TOP + PLOT_H}" x2="{x:.1f}" y2="{TOP + PLOT_H + 4}" '
        f'stroke="{COLOURS["muted"]}"/><text x="{x:.1f}" y="{TOP + PLOT_H + 16}" '
        f'font-size="11" text-anchor="{anchor}" fill="{COLOURS["muted"]}">{escape(text)}</text>'
    )


def _marker(at: float | None) -> str:
    if at is None:
        return ""
    x = LEFT + PLOT_W * at
    return (
        f'<line x1="{x:.1f}" y1="{TOP - 6}" x2="{x:.1f}" y2="{TOP + PLOT_H}" '
        f'stroke="{COLOURS["ink"]}" stroke-dasharray="4 3"/>'
        f'<text x="{x - 4:.1f}" y="{TOP - 8}" font-size="11" text-anchor="end" '
        f'fill="{COLOURS["ink"]}">threshold {at:g}</text>'
    )


def line(
    points: list[tuple[datetime, float]], *, label: str, unit: str, y_max: float | None = None
) -> Markup:
    """A line over time (two points or more), y from 0; each point is a dot when few."""
    ticks = _value_ticks(max(v for _, v in points), y_max)
    t0, t1 = points[0][0].timestamp(), points[-1][0].timestamp()
    xy = [
        (LEFT + PLOT_W * (t.timestamp() - t0) / ((t1 - t0) or 1.0), _y(v, ticks[-1]))
        for t, v in points
    ]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    dots = "".join(_dot(x, y) for x, y in xy) if len(xy) <= 40 else ""
    body = (
        _y_axis(ticks, _y_title(unit))
        + f'<polyline class="line" fill="none" stroke="{COLOURS["accent"]}" stroke-width="2.5" '
        f'points="{path}"/>{dots}'
        + _x_tick(LEFT, f"{points[0][0]:%m-%d %H:%M}", "start")
        + _x_tick(W - RIGHT, f"{points[-1][0]:%m-%d %H:%M}", "end")
        + _x_title("time (UTC)")
        + _end_label(xy[-1], points[-1][1], unit)
    )
    return svg(label, body)


def _value_ticks(top: float, y_max: float | None) -> list[float]:
    """0-100 in quarters for a percentage; else room above the top value for its label."""
    return [0, 25, 50, 75, 100] if y_max == 100 else nice_ticks(top * 1.15)


def _dot(x: float, y: float, r: float = 3) -> str:
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{COLOURS["accent"]}"/>'


def _end_label(xy: tuple[float, float], value: float, unit: str) -> str:
    x, y = xy
    text = f"now {_num(value)}{unit_suffix(unit)}"
    return (
        f'<text x="{x - 6:.1f}" y="{max(y - 8, TOP + 10):.1f}" font-size="12" font-weight="650" '
        f'text-anchor="end" fill="{COLOURS["ink"]}">{escape(text)}</text>'
    )


def unit_suffix(unit: str) -> str:
    return " %" if unit == "%" else f" {unit}"


def _y_title(unit: str) -> str:
    return "percent" if unit == "%" else unit


def level(
    value: float, taken_at: datetime, *, label: str, unit: str, y_max: float | None = None
) -> Markup:
    """One live figure where a trend would be: a dot and its level across the plot."""
    ticks = _value_ticks(value, y_max)
    y = _y(value, ticks[-1])
    body = (
        _y_axis(ticks, _y_title(unit))
        + f'<line class="level" x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" '
        f'stroke="{COLOURS["accent"]}" stroke-width="2" stroke-dasharray="6 4"/>'
        + _dot(W - RIGHT - 4, y, 4.5)
        + _x_tick(W - RIGHT, f"{taken_at:%m-%d %H:%M}", "end")
        + _x_title("time (UTC)")
        + _end_label((W - RIGHT - 10, y), value, unit)
    )
    return svg(label, body)


def reliability(
    bins: list[tuple[float, float, int, float | None]],
    *,
    label: str,
    curves: list[tuple[str, list[tuple[float, float]]]] = (),
) -> Markup:
    """A reliability plot: per confidence bin (low, high, reviews, accuracy 0-1), a bar as
    high as the share a person agreed with, its review count above it, the diagonal a
    calibrated AI would follow, and each (name, calibration map's points) as a line from
    0 to 1 (flat beyond its breakpoints, as the map is). Empty bins draw nothing."""
    ticks = [0.0, 25.0, 50.0, 75.0, 100.0]
    bars = "".join(_reliability_bar(*b) for b in bins if b[2])
    x_ticks = "".join(_x_tick(LEFT + PLOT_W * i / 5, f"{i / 5:g}") for i in range(6))
    diagonal = (
        f'<line class="diagonal" x1="{LEFT}" y1="{TOP + PLOT_H}" x2="{W - RIGHT}" y2="{TOP}" '
        f'stroke="{COLOURS["muted"]}" stroke-dasharray="5 4"><title>perfect calibration'
        "</title></line>"
    )
    maps = "".join(_map_curve(name, points) for name, points in curves)
    body = _y_axis(ticks, "agreed with a person, %") + bars + diagonal + maps + x_ticks
    return svg(label, body + _x_title("AI confidence"))


def _map_curve(name: str, points: list[tuple[float, float]]) -> str:
    ends = [(0.0, points[0][1]), *points, (1.0, points[-1][1])]
    xy = " ".join(f"{LEFT + PLOT_W * x:.1f},{TOP + PLOT_H * (1 - y):.1f}" for x, y in ends)
    return (
        f'<polyline class="map" points="{xy}" fill="none" stroke="{COLOURS["ink"]}" '
        f'stroke-width="2"><title>{escape(name)}</title></polyline>'
    )


def _reliability_bar(low: float, high: float, n: int, accuracy: float | None) -> str:
    share = accuracy or 0.0
    h = max(PLOT_H * share, 2.0)  # 0 % agreed is still a bin with reviews: a visible line
    x, w = LEFT + PLOT_W * low + 2, PLOT_W * (high - low) - 4
    y = TOP + PLOT_H - h
    tip = f"{low:g}-{high:g}: {n:,} reviews, {100 * share:.0f} % agreed"
    return (
        f'<rect class="rel" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" '
        f'fill="{COLOURS["accent"]}" fill-opacity="0.8"><title>{escape(tip)}</title></rect>'
        f'<text class="rel-count" x="{x + w / 2:.1f}" y="{max(y - 4, TOP - 4):.1f}" '
        f'font-size="10" text-anchor="middle" fill="{COLOURS["ink"]}">{n:,}</text>'
    )
