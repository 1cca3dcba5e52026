"""Calibration of the AI against people: how often its label matched a person's, per
provider, model and prompt version, how well its confidence foretold that (ECE), the stored
calibration maps, and the threshold held to the tenant's error budget.

The people's labels are the `reviews` rows: escalations and the random audit sample
(ENRICHMENT_AUDIT_RATE). A review keeps the AI's label, confidence and source as they were
when the person decided, so each comparison is like with like. A record counts once, with
its latest review (an override replaces the review it names); reviews of records the AI
never labelled (it failed every attempt) say nothing about its labels and are left out.

The pure math (reliability bins, ECE, the threshold search) is in reviews/stats.py, shared
with `enrichment eval` on labelled data and `enrichment eval --reviews` (reviews/report.py).
The table and the bins count every latest review; escalations are the AI's hard cases, so
they lean pessimistic. The threshold advice does not: it is the one search beat's
auto_threshold applies (reviews/report.py `budget`), on the weighted audit sample, on the
confidence the fleet decides on. Nothing here changes a threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from enrichment.core.calibration_maps import latest_maps
from enrichment.core.models import ExceptionRecord, Tenant
from enrichment.core.settings import Settings
from enrichment.core.tenant_settings import TenantSettings
from enrichment.core.text import plural, printable
from enrichment.reviews import stats
from enrichment.reviews.report import Budget, budget, latest_reviews
from enrichment.reviews.stats import BINS, ece, reliability_bins

# ---------------------------------------------------------------- the views


class GroupFigures(BaseModel):
    """The AI against people for one provider, model and prompt version (or all of them)."""

    provider: str | None
    model: str | None
    prompt_version: str | None
    reviews: int = Field(description="records reviewed by a person where the AI gave a label")
    accuracy: float = Field(description="0-1: share where the AI's label was the person's")
    ece: float = Field(description=f"0-1: expected calibration error, {BINS} equal-width bins")


class BinFigures(BaseModel):
    """One confidence bin of the reliability plot (all groups together)."""

    low: float
    high: float
    reviews: int
    mean_confidence: float | None = Field(description="None when the bin is empty")
    accuracy: float | None = Field(description="observed, 0-1; None when the bin is empty")


class Advice(BaseModel):
    """The error-budget threshold from the audit reviews (reviews/report.py `budget`): what
    beat applies when the tenant has auto_threshold on, advice otherwise."""

    status: Literal["advice", "more_reviews_needed", "unreachable"]
    reviews: int = Field(description="audit reviews (the random sample) the search rests on")
    min_reviews: int = Field(
        description="audit reviews before any threshold can pass: even none wrong needs "
        "this many for the upper bound to reach the target"
    )
    more_needed: int = Field(0, description="audit reviews still needed before advice")
    target_error_pct: float = Field(description="the tenant's max_auto_error_rate, 0-100")
    floor: float = Field(description="ENRICHMENT_AUTO_THRESHOLD_FLOOR: never advised below")
    scale: Literal["calibrated", "raw", "mixed"] = Field(
        description="the confidence searched: through the stored maps, raw (no map yet), or "
        "both (some sources have a map)"
    )
    auto_threshold: bool = Field(description="True: beat applies it; False: advice only")
    threshold: float | None = Field(None, description="the advised threshold, 0-1")
    automated_reviews: int | None = Field(None, description="audit reviews at or above it")
    error_pct: float | None = Field(None, description="their weighted error rate, 0-100")
    error_upper_pct: float | None = Field(
        None, description="its one-sided 95 % Clopper-Pearson upper bound, 0-100"
    )
    would_review_records: int | None = Field(
        None, description="the tenant's classified records below it: sent to review"
    )
    classified_records: int = 0
    current_threshold: float | None = None
    current_review_records: int | None = Field(
        None, description="the tenant's classified records below its current threshold"
    )
    words: str = Field("", description="the advice in one sentence")


class MapView(BaseModel):
    """A source's latest calibration map (core/calibration_maps.py) as the report draws it."""

    provider: str
    model: str
    prompt_version: str
    version: int
    reviews: int = Field(description="the audit reviews it was fitted on")
    points: list[tuple[float, float]] = Field(description="(raw confidence, P(agreed))")


class Calibration(BaseModel):
    """The tenant's AI against people: overall, per source, the bins, and the advice."""

    reviews: int
    overall: GroupFigures | None
    groups: list[GroupFigures]
    bins: list[BinFigures]
    advice: Advice
    maps: list[MapView] = Field(default_factory=list, description="each source's latest map")


@dataclass(frozen=True)
class Judged:
    """One reviewed record: the AI's confidence and source then, and if the person agreed."""

    confidence: float
    correct: bool
    provider: str | None = None
    model: str | None = None
    prompt_version: str | None = None

    @property
    def source(self) -> tuple[str | None, str | None, str | None]:
        return self.provider, self.model, self.prompt_version


def figures(judged: Sequence[Judged], source: tuple = (None, None, None)) -> GroupFigures:
    confidences, correct = [j.confidence for j in judged], [j.correct for j in judged]
    return GroupFigures(
        provider=source[0],
        model=source[1],
        prompt_version=source[2],
        reviews=len(judged),
        accuracy=sum(correct) / len(judged) if judged else 0.0,
        ece=ece(confidences, correct),
    )


def by_source(judged: Sequence[Judged]) -> list[GroupFigures]:
    """One row per provider, model and prompt version, in name order."""
    groups: dict[tuple, list[Judged]] = {}
    for j in judged:
        groups.setdefault(j.source, []).append(j)
    ordered = sorted(groups, key=lambda k: tuple(part or "" for part in k))
    return [figures(groups[key], key) for key in ordered]


def bin_figures(judged: Sequence[Judged]) -> list[BinFigures]:
    rows = reliability_bins([j.confidence for j in judged], [j.correct for j in judged])
    return [
        BinFigures(
            low=i / BINS,
            high=(i + 1) / BINS,
            reviews=n,
            mean_confidence=conf if n else None,
            accuracy=acc if n else None,
        )
        for i, (n, conf, acc) in enumerate(rows)
    ]


# ---------------------------------------------------------------- from the database


def _judged(label: str, ai_label: str, confidence: float, source: dict | None) -> Judged:
    source = source or {}
    return Judged(
        confidence=confidence,
        correct=ai_label == label,
        provider=source.get("provider"),
        model=source.get("model"),
        prompt_version=source.get("prompt_version"),
    )


def _classified_below(session: Session, tenant_id: int, threshold: float | None) -> int:
    """The tenant's classified records whose deciding confidence (the calibrated one when the
    record has it) is under `threshold` (all of them for None)."""
    R = ExceptionRecord
    query = select(func.count()).where(R.tenant_id == tenant_id, R.ai_confidence.is_not(None))
    if threshold is not None:
        decided = func.coalesce(R.ai_calibrated_confidence, R.ai_confidence)
        query = query.where(decided < threshold)
    return session.scalar(query)


def _scale(calibrated: int, reviews: int) -> str:
    return "raw" if not calibrated else "calibrated" if calibrated == reviews else "mixed"


def advice(session: Session, tenant: Tenant, b: Budget) -> Advice:
    """The error-budget threshold `b` for the tenant, counted against its records."""
    current = tenant.confidence_threshold
    needed = stats.min_reviews(b.target)
    common = {
        "reviews": b.audit_reviews,
        "min_reviews": needed,
        "target_error_pct": 100 * b.target,
        "floor": b.floor,
        "scale": _scale(b.calibrated_reviews, b.audit_reviews),
        "auto_threshold": TenantSettings.parse(tenant.settings).auto_threshold,
        "classified_records": _classified_below(session, tenant.id, None),
        "current_threshold": current,
        "current_review_records": _classified_below(session, tenant.id, current),
    }
    if b.audit_reviews < needed:
        found = Advice(status="more_reviews_needed", more_needed=needed - b.audit_reviews, **common)
    elif b.found is None:
        found = Advice(status="unreachable", **common)
    else:
        found = Advice(
            status="advice",
            threshold=b.found.threshold,
            automated_reviews=b.found.reviews,
            error_pct=100 * b.found.error_rate,
            error_upper_pct=100 * b.found.upper,
            would_review_records=_classified_below(session, tenant.id, b.found.threshold),
            **common,
        )
    return found.model_copy(update={"words": advice_words(found)})


def measure(session: Session, tenant: Tenant, settings: Settings) -> Calibration:
    """The tenant's calibration against its reviews (all of them; nothing written)."""
    reviews = latest_reviews(session, tenant.id)
    judged = [_judged(r.label, r.ai_label, r.ai_confidence, r.ai_source) for r in reviews]
    maps = latest_maps(session, tenant.id)
    return Calibration(
        reviews=len(judged),
        overall=figures(judged) if judged else None,
        groups=by_source(judged),
        bins=bin_figures(judged),
        advice=advice(session, tenant, budget(tenant, settings, reviews, maps)),
        maps=[
            MapView(
                provider=p,
                model=m,
                prompt_version=v,
                version=c.version,
                reviews=c.map.n,
                points=list(zip(c.map.x, c.map.y, strict=True)),
            )
            for (p, m, v), c in sorted(maps.items())
        ],  # fmt: skip
    )


# ---------------------------------------------------------------- in words


def advice_words(a: Advice) -> str:
    """The advice as one sentence a person can act on."""
    budget = (
        f"automated decisions wrong at most {a.target_error_pct:g} % (one-sided 95 % upper bound)"
    )
    if a.status == "more_reviews_needed":
        return (
            f"not yet: {budget} needs at least {a.min_reviews} audit reviews; "
            f"{a.reviews} so far, {a.more_needed} more needed"
        )
    if a.status == "unreachable":
        return (
            f"no threshold at or above {a.floor:g} keeps {budget} "
            f"({plural(a.reviews, 'audit review')}); keep the current one and look at the "
            "labels people corrected"
        )
    current = (
        f"; the current threshold {a.current_threshold:g} sends {a.current_review_records:,}"
        if a.current_threshold is not None
        else ""
    )
    applied = (
        "auto_threshold is on: beat applies it"
        if a.auto_threshold
        else "Advice only: nothing was changed"
    )
    return (
        f"a threshold of {a.threshold:.4g} on the {a.scale} confidence keeps {budget}: "
        f"{a.error_pct:.1f} % wrong among the {a.automated_reviews} audit reviews at or above "
        f"it, upper bound {a.error_upper_pct:.1f} %; it would have sent "
        f"{a.would_review_records:,} of {a.classified_records:,} classified records to "
        f"review{current}. {applied}"
    )


def _cell(value: str | None) -> str:
    return printable(value, 40) or "-"


def table_lines(cal: Calibration, tenant: str) -> list[str]:
    """The figures for a terminal: one row per source, the overall, the bins, the advice.
    Model and prompt names are stored data: made printable."""
    head = f"calibration against people's labels for {printable(tenant)}: "
    if not cal.reviews:
        return [head + "no reviews yet"]
    head += f"{plural(cal.reviews, 'review')} (the latest per record where the AI gave a label)"
    rows = [(_cell(g.provider), _cell(g.model), _cell(g.prompt_version), g) for g in cal.groups]
    if cal.overall is not None:
        rows.append(("all", "", "", cal.overall))
    titles = ("provider", "model", "prompt")
    widths = [max(len(t), *(len(r[i]) for r in rows)) for i, t in enumerate(titles)]
    lines = [head, _row(titles, widths, ("reviews", "accuracy", "ECE"))]
    for *names, g in rows:
        numbers = (f"{g.reviews:,}", f"{g.accuracy:.3f}", f"{g.ece:.3f}")
        lines.append(_row(names, widths, numbers))
    lines += bin_lines(cal.bins)
    return [*lines, f"threshold advice: {cal.advice.words}"]


def _row(names: Sequence[str], widths: list[int], numbers: Sequence[str]) -> str:
    text = "  ".join(f"{name:<{w}}" for name, w in zip(names, widths, strict=True))
    return f"  {text}  {numbers[0]:>7}  {numbers[1]:>8}  {numbers[2]:>6}"


def bin_lines(bins: Sequence[BinFigures]) -> list[str]:
    """The reliability bins that hold reviews, as rows."""
    lines = ["  confidence bin   reviews  mean conf  accuracy"]
    for b in bins:
        if b.reviews:
            lines.append(
                f"  [{b.low:.1f}, {b.high:.1f})     {b.reviews:>7,}  {b.mean_confidence:>9.3f}"
                f"  {b.accuracy:>8.3f}"
            )
    return lines
