"""The statistics of confidence against reviews (enrichment/reviews/stats.py), pure: each
figure against an answer known by hand, a textbook, or scipy's own distribution."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import pytest
from scipy.stats import beta, binom, chi2

from enrichment.reviews import stats


def reviews(*groups: tuple[float, int, int]) -> tuple[list[float], list[bool]]:
    """(confidence, right, wrong) groups as the two lists the functions take."""
    conf, ok = [], []
    for confidence, right, wrong in groups:
        conf += [confidence] * (right + wrong)
        ok += [True] * right + [False] * wrong
    return conf, ok


# ---------------------------------------------------------------- the calibration map

# 0.6: 5 of 10 agreed, 0.7: 3 of 10 (a violation: pooled with 0.6 at 8/20), 0.9: 9 of 10.
HAND_MADE = reviews((0.6, 5, 5), (0.7, 3, 7), (0.9, 9, 1))


def test_isotonic_pools_the_violating_pair_and_interpolates_between_blocks():
    fitted = stats.fit_map(*HAND_MADE, min_reviews=1, prior_reviews=0)

    assert fitted.x == (0.6, 0.7, 0.9)
    assert fitted.y == pytest.approx((0.4, 0.4, 0.9))
    assert fitted.apply(0.8) == pytest.approx(0.65)  # halfway from 0.4 to 0.9
    assert (fitted.apply(0.1), fitted.apply(1.0)) == pytest.approx((0.4, 0.9))  # flat beyond


def test_the_prior_shrinks_each_block_toward_the_overall_agreement():
    fitted = stats.fit_map(*HAND_MADE, min_reviews=1, prior_reviews=10)

    overall = 17 / 30
    assert fitted.y == pytest.approx(((8 + 10 * overall) / 30,) * 2 + ((9 + 10 * overall) / 20,))


def test_a_shrunk_small_block_is_pooled_again_so_the_map_stays_monotone():
    # 100 reviews at 0.8 (80 agreed) then 2 at 0.9 (both agreed): shrunk alone, the small
    # block would fall to (2 + 10 * 82/102) / 12 < 0.8, under the big one.
    conf, ok = reviews((0.8, 80, 20), (0.9, 2, 0))
    fitted = stats.fit_map(conf, ok, min_reviews=1, prior_reviews=10)

    assert list(fitted.y) == sorted(fitted.y)
    assert fitted.apply(0.9) >= fitted.apply(0.8)


def test_no_map_below_the_minimum_and_values_clipped_off_certainty():
    conf, ok = reviews((0.9, stats.MIN_MAP_REVIEWS - 1, 0))
    assert stats.fit_map(conf, ok) is None

    conf, ok = reviews((0.9, stats.MIN_MAP_REVIEWS, 0), (0.3, 0, stats.MIN_MAP_REVIEWS))
    fitted = stats.fit_map(conf, ok, prior_reviews=0)
    assert (fitted.apply(0.3), fitted.apply(0.9)) == (0.01, 0.99)


def test_a_weight_counts_as_that_many_copies_and_the_map_round_trips_json():
    conf, ok = [0.6, 0.7, 0.9, 0.9], [True, False, True, False]
    weighted = stats.fit_map(conf, ok, [2, 1, 3, 1], min_reviews=1, prior_reviews=0)
    copies = stats.fit_map(
        [0.6, 0.6, 0.7, 0.9, 0.9, 0.9, 0.9],
        [True, True, False, True, True, True, False],
        min_reviews=1,
        prior_reviews=0,
    )
    assert weighted.y == pytest.approx(copies.y) and weighted.x == copies.x

    now = datetime(2026, 1, 2, tzinfo=UTC)
    fitted = stats.fit_map(*HAND_MADE, min_reviews=1, now=now)
    again = stats.CalibrationMap.from_json(fitted.to_json())
    assert again == fitted and (again.n, again.fitted_at) == (30, now.isoformat())
    assert again.version == stats.MAP_VERSION


# ---------------------------------------------------------------- bounds and intervals


@pytest.mark.parametrize(("k", "n"), [(0, 10), (0, 59), (3, 50), (10, 200), (7, 7)])
def test_the_upper_bound_is_scipys_one_sided_clopper_pearson(k, n):
    expected = 1.0 if k == n else beta.ppf(0.95, k + 1, n - k)
    assert stats.upper_bound(k, n) == pytest.approx(expected, rel=1e-9)


def test_with_no_errors_the_bound_is_the_closed_form():
    # P(no error in n) = (1 - p)^n = 0.05 at the bound: 59 clean reviews reach 5 %, 58 not.
    assert stats.upper_bound(0, 59) == pytest.approx(1 - 0.05 ** (1 / 59))
    assert stats.upper_bound(0, 59) < 0.05 < stats.upper_bound(0, 58)


def test_wilson_is_the_score_interval():
    z, k, n = 1.959963984540054, 3, 10
    p = k / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert stats.wilson(k, n) == pytest.approx((center - half, center + half))


# ---------------------------------------------------------------- the threshold search


def test_the_threshold_is_the_lowest_whose_upper_bound_meets_the_target():
    # 60 right at 0.9 (bound 1 - 0.05^(1/60) = 4.87 %), 4 wrong at 0.8, 40 wrong at 0.5.
    conf, ok = reviews((0.9, 60, 0), (0.8, 0, 4), (0.5, 0, 40))
    found = stats.search_threshold(conf, ok, target=0.05, floor=0.5)

    assert (found.threshold, found.reviews, found.errors, found.error_rate) == (0.9, 60, 0, 0)
    assert found.upper == pytest.approx(1 - 0.05 ** (1 / 60))


def test_no_threshold_when_too_few_reviews_back_it_or_every_one_is_below_the_floor():
    conf, ok = reviews((0.9, 50, 0), (0.5, 0, 40))  # 50 clean: bound 5.8 %
    assert stats.search_threshold(conf, ok, target=0.05, floor=0.5) is None

    conf, ok = reviews((0.3, 500, 0))
    assert stats.search_threshold(conf, ok, target=0.05, floor=0.5) is None
    assert stats.search_threshold(conf, ok, target=0.05, floor=0.2).threshold == 0.3


def test_a_few_errors_among_many_right_still_qualify():
    conf, ok = reviews((0.95, 200, 2), (0.7, 10, 10))
    found = stats.search_threshold(conf, ok, target=0.05, floor=0.5)

    assert (found.threshold, found.reviews, found.errors) == (0.95, 202, 2)
    assert found.upper == pytest.approx(beta.ppf(0.95, 3, 200))


def test_weighted_search_uses_the_weighted_rate_and_kishs_n():
    conf, ok = reviews((0.9, 80, 0))
    equal = stats.search_threshold(conf, ok, [50.0] * 80, target=0.05, floor=0.5)
    assert (equal.n_effective, equal.upper) == pytest.approx((80, 1 - 0.05 ** (1 / 80)))

    # Half the reviews weigh 3: n_eff = (160)^2 / (40 * 9 + 40) = 64, fewer than 80.
    uneven = stats.search_threshold(conf, ok, [3.0] * 40 + [1.0] * 40, target=0.05, floor=0.5)
    assert uneven.n_effective == pytest.approx(64)
    assert uneven.upper == pytest.approx(1 - 0.05 ** (1 / 64))


# ---------------------------------------------------------------- weighted estimates


def test_horvitz_thompson_rate_kish_n_and_weighted_ece():
    assert stats.weighted_rate([True, False], [3, 1]) == 0.75
    assert stats.weighted_rate([True, False]) == 0.5
    assert (stats.kish_n([1, 1, 1, 1]), stats.kish_n([3, 1])) == (4, 1.6)
    # One bin: weighted accuracy 0.75 against confidence 0.95.
    assert stats.ece([0.95, 0.95], [True, False], weights=[3, 1]) == pytest.approx(0.2)
    # Two bins, weights 3 and 1: 3/4 * |1 - 0.9| + 1/4 * |0 - 0.3|.
    assert stats.ece([0.9, 0.3], [True, False], weights=[3, 1]) == pytest.approx(0.15)


def test_ece_of_a_map_and_cross_fitting_is_deterministic_by_review_id():
    rng = random.Random(7)
    ids = list(range(1, 301))
    conf = [0.95] * 300
    ok = [rng.random() < 0.7 for _ in ids]  # overconfident: right about 70 % at 0.95
    raw = stats.ece(conf, ok)
    crossfit = stats.crossfit_ece(ids, conf, ok)

    assert raw == pytest.approx(0.95 - sum(ok) / 300)
    assert crossfit < 0.05 < raw
    order = list(range(300))
    rng.shuffle(order)
    shuffled = stats.crossfit_ece([ids[i] for i in order], [conf[i] for i in order],
                                  [ok[i] for i in order])  # fmt: skip
    assert shuffled == pytest.approx(crossfit)
    assert [stats.fold_of(i) for i in ids] == [stats.fold_of(i) for i in ids]
    assert {stats.fold_of(i) for i in ids} == set(range(stats.FOLDS))


def test_no_cross_fitted_ece_when_a_fold_leaves_too_few_to_fit():
    ids = list(range(40))
    assert stats.crossfit_ece(ids, [0.9] * 40, [True] * 40) is None


# ---------------------------------------------------------------- experiments


@pytest.mark.parametrize("weights", [{"a": 1, "b": 1}, {"control": 9, "candidate": 1}])
def test_the_sticky_split_is_deterministic_and_its_shares_follow_the_weights(weights):
    n, total = 10_000, sum(weights.values())
    first = [stats.sticky_variant(i, "exp-1", weights) for i in range(n)]

    assert first == [stats.sticky_variant(i, "exp-1", weights) for i in range(n)]
    for name, weight in weights.items():
        # Within the 99.9 % binomial interval of its share: fails 1 time in 1,000 by chance,
        # but the ids and the hash are fixed, so it either always passes or never does.
        low, high = binom.interval(0.999, n, weight / total)
        assert low <= first.count(name) <= high
    other = [stats.sticky_variant(i, "exp-2", weights) for i in range(n)]
    assert other != first  # another salt, another split


def test_mcnemar_on_agrestis_presidential_approval_table():
    # Agresti, Categorical Data Analysis, table 10.1: approve/approve 794, approve then
    # disapprove 150, disapprove then approve 86, disapprove twice 570.
    baseline = [True] * 794 + [True] * 150 + [False] * 86 + [False] * 570
    candidate = [True] * 794 + [False] * 150 + [True] * 86 + [False] * 570
    paired = stats.mcnemar_paired(baseline, candidate)

    assert (paired.gains, paired.losses, paired.exact) == (86, 150, False)
    assert paired.pvalue == pytest.approx(chi2.sf((150 - 86 - 1) ** 2 / 236, 1))
    assert stats.verdict(paired) == "worse"
    swapped = stats.mcnemar_paired(candidate, baseline)
    assert stats.verdict(swapped) == "better"


def test_mcnemar_is_exact_with_few_discordant_pairs():
    baseline = [True] * 9 + [False] + [True] * 20
    candidate = [False] * 9 + [True] + [True] * 20
    paired = stats.mcnemar_paired(baseline, candidate)

    assert (paired.gains, paired.losses, paired.exact) == (1, 9, True)
    assert paired.pvalue == pytest.approx(2 * 11 / 1024)  # two-sided binomial, 1 of 10
    assert stats.verdict(paired) == "worse"
    close = stats.mcnemar_paired([True] * 5 + [False] * 3, [False] * 5 + [True] * 3)
    assert stats.verdict(close) == "not yet distinguishable"


def test_cohens_kappa_on_the_textbook_table_and_macro_f1():
    # 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15: p_o 0.7, p_e 0.5, kappa 0.4.
    first = ["yes"] * 25 + ["no"] * 25
    second = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert stats.kappa(first, second) == pytest.approx(0.4)
    assert stats.kappa(["a"] * 5, ["a"] * 5) is None

    # yes: precision 20/30, recall 20/25; no: precision 15/20, recall 15/25.
    f1_yes, f1_no = 2 * 20 / (30 + 25), 2 * 15 / (20 + 25)
    assert stats.macro_f1(first, second) == pytest.approx((f1_yes + f1_no) / 2)
