"""The statistics of confidence against people's reviews, as pure functions (no database):
reliability bins and ECE, the calibration map, the threshold search, weighted estimates, and
the helpers of an experiment (a sticky split, intervals, F1, kappa, McNemar and a verdict).

Intervals, tests and the isotonic fit come from scipy and statsmodels, never our own code.

Weights. The audit sample is drawn with a probability per record, so each review stands for
1 / that probability records (Horvitz-Thompson). A rate is the ratio estimate
sum(w * x) / sum(w), which does not depend on the weights' scale (uniform weights give the
plain share). An interval on a weighted rate uses Kish's effective sample size
n_eff = (sum w)^2 / sum(w^2) and the count rate * n_eff in the binomial interval: an
approximation (it treats the weighted sample as n_eff independent draws), exact when the
weights are equal.

The calibration map: isotonic regression of "the person agreed" (0/1) on the raw confidence,
not Platt's logistic. Confidences come from several providers: an LLM states a few round
values (0.85, 0.9, 0.95) and the local model has its own calibration, so the map from
confidence to agreement has plateaus and steps that a two-parameter sigmoid cannot follow;
isotonic assumes only that more confidence never means less agreement. Its weakness is
overfitting small samples (a block of three reviews at 100 %), so: no map below
MIN_MAP_REVIEWS reviews; each block is shrunk toward the overall agreement as if
PRIOR_REVIEWS more reviews at that rate were in it (a Beta prior), then the shrunk blocks are
fitted again so the map stays monotone; values are clipped to [0.01, 0.99]. Between
breakpoints (each block's lowest and highest confidence) the map is linear; beyond them, flat.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import numpy as np

from enrichment.core.calibration_maps import MAP_VERSION, CalibrationMap  # noqa: F401 (its home)

# scipy and statsmodels are imported inside the functions that use them: most processes that
# import this module (every worker, the CLI) never fit a map or draw an interval.

BINS = 10  # equal-width confidence bins on [0, 1]
MIN_MAP_REVIEWS = 50  # below this many reviews, no map: isotonic would follow the noise
PRIOR_REVIEWS = 10.0  # pseudo-reviews at the overall agreement added to each isotonic block
CLIP = (0.01, 0.99)  # a map never claims certainty either way
FOLDS = 5  # cross-fitting: each review scored by a map fitted on the other folds
LEVEL = 0.95  # the confidence level of every interval and bound here
EXACT_BELOW = 25  # McNemar: the exact binomial test below this many discordant pairs

Verdict = Literal["better", "worse", "not yet distinguishable"]


def _w(weights: Sequence[float] | None, n: int) -> np.ndarray:
    return np.ones(n) if weights is None else np.asarray(weights, dtype=float)


# ---------------------------------------------------------------- reliability and ECE


def reliability_bins(
    confidences: Sequence[float],
    correct: Sequence[bool],
    bins: int = BINS,
    weights: Sequence[float] | None = None,
) -> list[tuple[int, float, float]]:
    """Per equal-width bin on [0, 1]: (count, mean confidence, accuracy), the means weighted
    when `weights` are given; 1.0 goes in the top bin. Empty bins are (0, 0.0, 0.0)."""
    sums = [[0, 0.0, 0.0, 0.0] for _ in range(bins)]
    w = _w(weights, len(confidences))
    for conf, ok, wi in zip(confidences, correct, w, strict=True):
        b = sums[min(int(conf * bins), bins - 1)]
        b[0], b[1], b[2], b[3] = b[0] + 1, b[1] + wi * conf, b[2] + wi * float(ok), b[3] + wi
    return [(n, c / t if n else 0.0, a / t if n else 0.0) for n, c, a, t in sums]


def ece(
    confidences: Sequence[float],
    correct: Sequence[bool],
    bins: int = BINS,
    weights: Sequence[float] | None = None,
) -> float:
    """Expected calibration error: sum over bins of (weight / total) * |accuracy - conf|."""
    w = _w(weights, len(confidences))
    total = float(w.sum())
    if not total:
        return 0.0
    idx = np.minimum((np.asarray(confidences, dtype=float) * bins).astype(int), bins - 1)
    per_bin = np.bincount(idx, weights=w, minlength=bins)
    rows = reliability_bins(confidences, correct, bins, weights)
    return sum(t / total * abs(acc - conf) for t, (_, conf, acc) in zip(per_bin, rows, strict=True))


# ---------------------------------------------------------------- weighted estimates


def weighted_rate(values: Sequence[bool], weights: Sequence[float] | None = None) -> float:
    """Horvitz-Thompson share of True: sum(w * x) / sum(w); 0.0 for nothing."""
    w = _w(weights, len(values))
    return float(np.dot(w, np.asarray(values, dtype=float)) / w.sum()) if w.sum() else 0.0


def kish_n(weights: Sequence[float]) -> float:
    """Kish's effective sample size (sum w)^2 / sum(w^2): n for equal weights, less otherwise."""
    w = np.asarray(weights, dtype=float)
    return float(w.sum() ** 2 / np.dot(w, w)) if len(w) else 0.0


def upper_bound(errors: float, n: float, level: float = LEVEL) -> float:
    """The one-sided `level` Clopper-Pearson upper bound on a rate seen as errors / n (the
    upper end of the two-sided 1 - 2 * (1 - level) interval); a count may be fractional (an
    effective one)."""
    from statsmodels.stats.proportion import proportion_confint

    return float(proportion_confint(errors, n, alpha=2 * (1 - level), method="beta")[1])


def clopper_pearson(k: float, n: float, level: float = LEVEL) -> tuple[float, float]:
    """The two-sided `level` Clopper-Pearson (exact) interval of k / n (k may be fractional:
    an effective count)."""
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(k, n, alpha=1 - level, method="beta")
    return float(low), float(high)


def wilson(k: float, n: float, level: float = LEVEL) -> tuple[float, float]:
    """The two-sided `level` Wilson score interval of k / n."""
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(k, n, alpha=1 - level, method="wilson")
    return float(low), float(high)


# ---------------------------------------------------------------- the calibration map


def fit_map(
    confidences: Sequence[float],
    correct: Sequence[bool],
    weights: Sequence[float] | None = None,
    *,
    min_reviews: int = MIN_MAP_REVIEWS,
    prior_reviews: float = PRIOR_REVIEWS,
    now: datetime | None = None,
) -> CalibrationMap | None:
    """The isotonic map fitted on these reviews (module docstring), None below min_reviews."""
    from scipy.optimize import isotonic_regression

    n = len(confidences)
    if n < min_reviews:
        return None
    w = _w(weights, n)
    w = w * (n / w.sum())  # in reviews, so the prior's strength means reviews
    xs, inverse = np.unique(np.asarray(confidences, dtype=float), return_inverse=True)
    wx = np.bincount(inverse, weights=w)  # ties pooled: one point per confidence seen
    yx = np.bincount(inverse, weights=w * np.asarray(correct, dtype=float)) / wx
    overall = float(np.dot(wx, yx) / wx.sum())
    first = isotonic_regression(yx, weights=wx)
    starts = first.blocks[:-1]
    shrunk = (first.weights * first.x[starts] + prior_reviews * overall) / (
        first.weights + prior_reviews
    )
    values = np.repeat(isotonic_regression(shrunk, weights=first.weights).x, np.diff(first.blocks))
    x, y = _breakpoints(xs, np.clip(values, *CLIP))
    stamp = (now or datetime.now(UTC)).isoformat()
    return CalibrationMap(tuple(x), tuple(y), n=n, fitted_at=stamp)


def _breakpoints(xs: np.ndarray, ys: np.ndarray) -> tuple[list[float], list[float]]:
    """Each run of equal values kept by its first and last x only (sklearn's trimming)."""
    keep = [
        i for i in range(len(xs)) if i in (0, len(xs) - 1) or not (ys[i - 1] == ys[i] == ys[i + 1])
    ]
    return [float(xs[i]) for i in keep], [float(ys[i]) for i in keep]


def fold_of(review_id: int, k: int = FOLDS) -> int:
    """A review's cross-fitting fold: fixed by its id, independent of order and time."""
    return int(_unit("fold", review_id) * k)


def crossfit_ece(
    ids: Sequence[int],
    confidences: Sequence[float],
    correct: Sequence[bool],
    weights: Sequence[float] | None = None,
    k: int = FOLDS,
) -> float | None:
    """ECE of the calibrated confidences, each review scored by a map fitted without its
    fold (an honest figure: a map scored on its own reviews flatters itself). None when a
    fold's complement is too small for a map."""
    w = _w(weights, len(ids))
    folds = np.array([fold_of(i, k) for i in ids], dtype=int)
    conf, ok = np.asarray(confidences, dtype=float), np.asarray(correct, dtype=bool)
    scored = np.empty(len(ids))
    for fold in range(k):
        held = folds == fold
        if not held.any():
            continue
        fitted = fit_map(conf[~held], ok[~held], w[~held])
        if fitted is None:
            return None
        scored[held] = [fitted.apply(c) for c in conf[held]]
    return ece(scored.tolist(), ok.tolist(), weights=w.tolist())


# ---------------------------------------------------------------- the threshold


@dataclass(frozen=True)
class Threshold:
    """A threshold found by `search_threshold`, with what it rests on."""

    threshold: float
    reviews: int  # reviews at or above it
    errors: float  # of those, where the person disagreed (weighted: rate * n_eff)
    error_rate: float  # the (weighted) point estimate
    upper: float  # its one-sided 95 % Clopper-Pearson upper bound
    n_effective: float  # Kish's n: `reviews` when unweighted


def search_threshold(
    confidences: Sequence[float],
    correct: Sequence[bool],
    weights: Sequence[float] | None = None,
    *,
    target: float,
    floor: float,
) -> Threshold | None:
    """The lowest t among the confidences seen (>= floor) at which the upper bound of the
    error rate of the reviews with confidence >= t is <= target; None if none qualifies.

    Only seen values are candidates: between two of them the set above t is the same. Each
    candidate's bound is one-sided 95 %; the search looks at several and keeps the lowest,
    which is not corrected for (a fixed-sequence test would be stricter)."""
    conf = np.asarray(confidences, dtype=float)
    wrong = ~np.asarray(correct, dtype=bool)
    w = _w(weights, len(conf))
    for t in np.unique(conf[conf >= floor]):
        found = _above(float(t), conf >= t, wrong, w, weighted=weights is not None)
        if found.upper <= target:
            return found
    return None


def _above(t: float, mask: np.ndarray, wrong: np.ndarray, w: np.ndarray, *, weighted: bool):
    n = int(mask.sum())
    if weighted:
        rate, n_eff = weighted_rate(wrong[mask], w[mask]), kish_n(w[mask])
        errors = rate * n_eff
    else:
        errors, n_eff = float(wrong[mask].sum()), float(n)
        rate = errors / n
    return Threshold(t, n, errors, rate, upper_bound(errors, n_eff), n_eff)


def min_reviews(target: float, level: float = LEVEL) -> int:
    """The fewest reviews whose upper bound can be within `target`: with none wrong the
    one-sided Clopper-Pearson bound is 1 - (1 - level) ** (1 / n)."""
    return int(np.ceil(np.log(1 - level) / np.log(1 - target)))


# ---------------------------------------------------------------- experiments


def _unit(salt: str, key: object) -> float:
    """A uniform number in [0, 1) fixed by (salt, key): the first 8 bytes of a BLAKE2b."""
    digest = hashlib.blake2b(f"{salt}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def sticky_variant(record_id: object, salt: str, weights: Mapping[str, float]) -> str:
    """The variant a record belongs to: the same for the same (record, salt) on every
    process, each variant's share its weight / the weights' sum."""
    point, total = _unit(salt, record_id), sum(weights.values())
    for name, weight in weights.items():
        point -= weight / total
        if point < 0:
            return name
    return name  # float rounding at the very top


def per_label(truth: Sequence[str], predicted: Sequence[str | None]) -> dict[str, dict]:
    """Precision, recall, F1 and support for every label seen in truth or predictions
    (a None prediction, a failed call, is wrong and counts for no label)."""
    labels = sorted({*truth, *(p for p in predicted if p is not None)})
    pairs = list(zip(truth, predicted, strict=True))
    table = {}
    for label in labels:
        tp = sum(t == label and p == label for t, p in pairs)
        n_pred = sum(p == label for _, p in pairs)
        n_true = sum(t == label for t, _ in pairs)
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_true if n_true else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        table[label] = {"precision": precision, "recall": recall, "f1": f1, "support": n_true}
    return table


def macro_f1(truth: Sequence[str], predicted: Sequence[str | None]) -> float:
    """Unweighted mean F1 over the labels in truth or predictions (sklearn's 'macro')."""
    table = per_label(truth, predicted)
    return sum(row["f1"] for row in table.values()) / len(table) if table else 0.0


def kappa(first: Sequence[str], second: Sequence[str]) -> float | None:
    """Cohen's kappa of two raters' labels; None when it is undefined (both raters gave one
    and the same label throughout: agreement by chance is then certain)."""
    from statsmodels.stats.inter_rater import cohens_kappa

    labels = sorted({*first, *second})
    index = {label: i for i, label in enumerate(labels)}
    table = np.zeros((len(labels), len(labels)))
    for a, b in zip(first, second, strict=True):
        table[index[a], index[b]] += 1
    if len(labels) < 2 or not table.sum():
        return None
    return float(cohens_kappa(table, return_results=False))


@dataclass(frozen=True)
class Paired:
    """McNemar on paired outcomes: `gains` where only the candidate was right, `losses`
    where only the baseline was; the p-value (exact below EXACT_BELOW discordant pairs)."""

    gains: int
    losses: int
    pvalue: float
    exact: bool


def mcnemar_paired(baseline: Sequence[bool], candidate: Sequence[bool]) -> Paired:
    from statsmodels.stats.contingency_tables import mcnemar

    pairs = list(zip(baseline, candidate, strict=True))
    both = sum(b and c for b, c in pairs)
    gains = sum(c and not b for b, c in pairs)
    losses = sum(b and not c for b, c in pairs)
    table = [[both, losses], [gains, len(pairs) - both - gains - losses]]
    exact = gains + losses < EXACT_BELOW
    result = mcnemar(table, exact=exact, correction=True)
    return Paired(gains, losses, float(result.pvalue), exact)


def verdict(paired: Paired, alpha: float = 1 - LEVEL) -> Verdict:
    """The candidate against the baseline in words: a difference only when McNemar says so."""
    if paired.pvalue >= alpha or paired.gains == paired.losses:
        return "not yet distinguishable"
    return "better" if paired.gains > paired.losses else "worse"
