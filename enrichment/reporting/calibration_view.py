"""The report's "AI against people" part: the review cards, the reliability figure, the
calibration table per provider, model and prompt version, and the threshold advice."""

from __future__ import annotations

from typing import NamedTuple

from enrichment.core.text import duration, plural
from enrichment.reporting import charts
from enrichment.reporting.pages import Card, Figure
from enrichment.reporting.reports import Report
from enrichment.reviews.calibration import Calibration, GroupFigures


class GroupRow(NamedTuple):
    provider: str
    model: str
    prompt: str
    reviews: str
    accuracy: str
    ece: str


class CalibrationPart(NamedTuple):
    """The review cards; with reviews, the reliability figure, the table and the advice."""

    cards: list[Card]
    figure: Figure | None = None
    rows: tuple[GroupRow, ...] = ()
    advice: str = ""
    note: str = ""


def _review_cards(report: Report) -> list[Card]:
    """The review queue from the snapshot, and how many reviews the figures rest on."""
    m, cal = report.metrics, report.calibration
    return [
        Card("Review queue", plural(m.review_backlog, "record"),
             "escalations and audit samples waiting"),
        Card("Oldest waiting",
             duration(m.oldest_review_age_s) if m.review_backlog else "none waiting",
             "in the review queue"),
        Card("Resolved by people", plural(m.human_resolved_records, "record"),
             "a person's label is final"),
        Card("Reviews compared", plural(cal.reviews if cal else 0, "review"),
             "latest per record, where the AI gave a label"),
        _auto_error_card(m),
    ]  # fmt: skip


def _auto_error_card(m) -> Card:
    """The error rate of automated decisions over the audit window, with its interval."""
    if m.auto_error_pct is None:
        return Card("Automated decisions wrong", "—", "no audit review in the window yet")
    return Card(
        "Automated decisions wrong",
        f"{m.auto_error_pct:.1f} %",
        f"95 % interval {m.auto_error_low_pct:.1f}-{m.auto_error_high_pct:.1f} %, "
        f"{plural(m.auto_reviews, 'audit review')} (weighted)",
    )


def _group_row(g: GroupFigures, *, overall: bool = False) -> GroupRow:
    sources = (g.provider, g.model, g.prompt_version)
    names = ("all", "", "") if overall else tuple(name or "—" for name in sources)
    return GroupRow(*names, f"{g.reviews:,}", f"{g.accuracy:.3f}", f"{g.ece:.3f}")


def _reliability(cal: Calibration) -> Figure:
    bins = [(b.low, b.high, b.reviews, b.accuracy) for b in cal.bins]
    curves = [
        (f"{m.provider} / {m.model} / {m.prompt_version}: map v{m.version}, "
         f"{m.reviews:,} audit reviews", m.points)
        for m in cal.maps
    ]  # fmt: skip
    chart = charts.reliability(
        bins, label="Reliability: AI confidence against people", curves=curves
    )
    note = (
        "Per confidence bin, the share of reviewed records whose AI label a person kept, with "
        "the number of reviews above each bar. A calibrated AI follows the dashed diagonal; "
        "the solid line is each source's latest calibration map (what a raw confidence now "
        "becomes, fitted on the audit sample)."
    )
    return Figure("Reliability against people", chart, note)


def part(report: Report) -> CalibrationPart:
    cal = report.calibration
    if cal is None or not cal.reviews:
        return CalibrationPart(_review_cards(report))
    rows = [_group_row(g) for g in cal.groups]
    if cal.overall is not None:
        rows.append(_group_row(cal.overall, overall=True))
    note = (
        "The AI's label and confidence against the label a person gave (escalations and the "
        "random audit sample), per provider, model and prompt version. ECE: expected "
        "calibration error over 10 equal-width bins, 0 is perfect."
    )
    figure = _reliability(cal)
    return CalibrationPart(_review_cards(report), figure, tuple(rows), cal.advice.words, note)
