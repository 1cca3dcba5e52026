"""The error rate of automated decisions, from a rolling window of audit reviews (issue 24):
what the monitor's `auto_error_*` columns hold and the auto_error alerts judge.

The window: the tenant's latest ENRICHMENT_DRIFT_WINDOW_REVIEWS audit reviews (the latest
per record, where the AI gave a label) no older than ENRICHMENT_DRIFT_WINDOW_S. Every audit
review is of a decision the AI automated (the audit sample is drawn when the AI resolves a
record), so "the person's label differs from the AI's" is an error of automation. The rate
is weighted by 1 / each review's sampling probability (Horvitz-Thompson: the sample favours
records near the threshold), with the two-sided 95 % Clopper-Pearson interval on Kish's
effective n (reviews/stats.py). One indexed query (`ix_reviews_tenant_created`), bounded by
the window's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from enrichment.core.models import Review
from enrichment.reviews import stats
from enrichment.reviews.report import AUDIT


@dataclass(frozen=True)
class AutoError:
    """The window's estimate, in percent (None without reviews)."""

    auto_reviews: int = 0
    auto_error_pct: float | None = None
    auto_error_low_pct: float | None = None
    auto_error_high_pct: float | None = None


def auto_error(
    session: Session,
    tenant_id: int,
    *,
    now: datetime,
    window_reviews: int,
    window_s: float,
    audit_rate: float,
) -> AutoError:
    """The weighted error rate of automated decisions over the window (module docstring)."""
    rows = session.execute(
        select(Review.record_id, Review.label, Review.ai_label, Review.sampling_probability)
        .where(
            Review.tenant_id == tenant_id,
            Review.kind == AUDIT,
            Review.ai_label.is_not(None),
            Review.created_at > now - timedelta(seconds=window_s),
            Review.created_at <= now,
        )
        .order_by(Review.id.desc())
        .limit(window_reviews)
    ).all()
    seen, wrong, weights = set(), [], []
    for r in rows:  # newest first: a record's latest review wins
        if r.record_id in seen:
            continue
        seen.add(r.record_id)
        wrong.append(r.label != r.ai_label)
        p = r.sampling_probability or audit_rate
        weights.append(1 / p if p > 0 else 1.0)
    return estimate(wrong, weights)


def estimate(wrong: list[bool], weights: list[float]) -> AutoError:
    """The weighted error rate and its interval, in percent (pure)."""
    if not wrong:
        return AutoError()
    rate, n_eff = stats.weighted_rate(wrong, weights), stats.kish_n(weights)
    low, high = stats.clopper_pearson(rate * n_eff, n_eff)
    return AutoError(len(wrong), 100 * rate, 100 * low, 100 * high)
