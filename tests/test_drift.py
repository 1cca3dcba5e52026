"""Drift (issue 24): the error rate of automated decisions over a rolling window of audit
reviews, its interval, and the auto_error alerts: pure rules first, then the monitor's
snapshot on real PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

import pytest

from enrichment.alerting.alerts import evaluate, rules_for
from enrichment.core import audit_sampling
from enrichment.core.models import Review, utcnow
from enrichment.core.settings import AlertPolicy
from enrichment.metrics import drift, monitor
from enrichment.reporting import report_html, reports, words
from enrichment.reviews import refit, stats
from tests.factories import make_record, make_tenant
from tests.test_alerts import STEP, T0

CLAUDE = {"provider": "anthropic", "model": "claude-sonnet-4-5", "prompt_version": "v2"}
POLICY = AlertPolicy(for_evaluations=2, repeat_interval_s=3600, min_sample=50)


@dataclass(frozen=True)
class Window:
    """The fields the auto_error rules read."""

    auto_reviews: int = 200
    auto_error_pct: float | None = 2.0
    auto_error_low_pct: float | None = 0.5


def states_after(windows, rules=None):
    rules = [r for r in (rules or rules_for({})) if r.metric == "auto_error"]
    states = {}
    for i, w in enumerate(windows):
        states = evaluate(states, w, tuple(rules), POLICY, now=T0 + i * STEP)
    return {sev: s.state for (_, sev), s in states.items()}


def test_warning_when_the_estimate_passes_the_target_critical_when_the_lower_bound_does():
    over = Window(auto_error_pct=8.0, auto_error_low_pct=3.0)  # noise or drift: a warning
    sure = Window(auto_error_pct=12.0, auto_error_low_pct=7.0)  # even the bound is over 5
    assert states_after([over, over]) == {"warning": "firing", "critical": "inactive"}
    assert states_after([sure, sure]) == {"warning": "firing", "critical": "firing"}
    # Recovered: under 0.8 x the target, both resolve.
    healthy = Window(auto_error_pct=2.0, auto_error_low_pct=0.5)
    assert states_after([sure, sure, healthy]) == {"warning": "resolved", "critical": "resolved"}


def test_too_few_reviews_or_none_never_alert_and_the_tenant_target_is_the_threshold():
    few = Window(auto_reviews=49, auto_error_pct=40.0, auto_error_low_pct=20.0)
    none = Window(auto_reviews=0, auto_error_pct=None, auto_error_low_pct=None)
    assert set(states_after([few, few, none, none]).values()) == {"inactive"}
    # A tenant that allows 10 %: 8 % is within its budget.
    loose = rules_for({"max_auto_error_rate": 0.1})
    over = Window(auto_error_pct=8.0, auto_error_low_pct=3.0)
    assert set(states_after([over, over], loose).values()) == {"inactive"}
    [warning] = [r for r in loose if r.name == "auto_error_warning"]
    assert words.threshold(warning) == (
        "error rate of automated decisions (audit reviews) over 10 %"
    )
    # The fleet's ENRICHMENT_MAX_AUTO_ERROR_RATE for a tenant without its own; the tenant's wins
    fleet = {r.name: r.threshold for r in rules_for({}, 0.02) if r.metric == "auto_error"}
    assert fleet == {"auto_error_warning": 2.0, "auto_error_critical": 2.0}
    assert set(states_after([over, over], rules_for({}, 0.02)).values()) != {"inactive"}
    own = rules_for({"max_auto_error_rate": 0.1}, 0.02)
    assert {r.threshold for r in own if r.metric == "auto_error"} == {10.0}


def test_the_estimate_is_weighted_and_its_interval_is_clopper_pearson():
    # 10 wrong of 100, equal weights: the plain share and the exact interval.
    found = drift.estimate([True] * 10 + [False] * 90, [1.0] * 100)
    low, high = stats.clopper_pearson(10, 100)
    assert (found.auto_reviews, found.auto_error_pct) == (100, pytest.approx(10.0))
    assert (found.auto_error_low_pct, found.auto_error_high_pct) == (
        pytest.approx(100 * low),
        pytest.approx(100 * high),
    )
    # The wrong ones drawn at half the rate stand for twice as many: 20 / 110.
    weighted = drift.estimate([True] * 10 + [False] * 90, [2.0] * 10 + [1.0] * 90)
    assert weighted.auto_error_pct == pytest.approx(100 * 20 / 110)
    assert drift.estimate([], []).auto_error_pct is None


def test_sampling_is_denser_near_the_threshold_and_never_under_the_base_rate():
    p = audit_sampling.probability
    assert p(0.80, 0.8, 0.05) == pytest.approx(0.20)  # at the threshold: 4x
    assert p(0.85, 0.8, 0.05) == pytest.approx(0.125)  # half-way out: 2.5x
    assert p(0.99, 0.8, 0.05) == pytest.approx(0.05)  # far: the base rate, the floor
    assert p(0.80, 0.8, 0.5) == 1.0  # capped at 1
    assert p(0.80, 0.8, 0.0) == 0.0  # audit off: nothing drawn


def seed(s, tenant, *, agreed: int, disagreed: int, at) -> None:
    for i in range(agreed + disagreed):
        rec = make_record(s, tenant, ai_label="DAMAGED_PACKAGE", ai_confidence=0.95)
        label = "DAMAGED_PACKAGE" if i < agreed else "PICK_DELAY"
        s.add(Review(tenant_id=tenant.id, record_id=rec.id, kind="audit", reviewer="ann",
                     label=label, actions=[], ai_label="DAMAGED_PACKAGE", ai_confidence=0.95,
                     ai_source=CLAUDE, sampling_probability=0.1, created_at=at))  # fmt: skip
    s.flush()


def test_the_monitor_snapshot_fires_when_agreement_drops_and_resolves_when_it_recovers(
    factory, settings
):
    now = utcnow()
    with factory.begin() as s:
        tenant = make_tenant(s, "drift-3pl")
        # Reviews older than the window (7 days) are not counted.
        seed(s, tenant, agreed=0, disagreed=50, at=now - timedelta(days=8))
        # Given: agreement dropped to 70 % over the last 200 audit reviews.
        seed(s, tenant, agreed=140, disagreed=60, at=now - timedelta(hours=2))
        first = monitor.measure(s, tenant, settings, settings.monitor, now=now)
    assert first.auto_reviews == 200
    assert first.auto_error_pct == pytest.approx(30.0)
    assert first.auto_error_low_pct > 5.0  # not noise: the lower bound is over the budget
    rules = rules_for({})
    drifted = [first, replace(first, taken_at=now + STEP)]
    assert states_after(drifted, rules) == {"warning": "firing", "critical": "firing"}

    # When people agree again on the next 200: the window holds only those.
    with factory.begin() as s:
        seed(s, tenant, agreed=200, disagreed=0, at=now - timedelta(hours=1))
        later = monitor.measure(s, s.merge(tenant), settings, settings.monitor, now=now)
    assert (later.auto_reviews, later.auto_error_pct) == (200, 0.0)
    assert states_after([*drifted, later], rules) == {"warning": "resolved", "critical": "resolved"}


def test_the_report_page_draws_the_map_and_the_error_rate_with_its_interval(factory, settings):
    now = utcnow()
    with factory.begin() as s:
        tenant = make_tenant(s, "page-3pl")
        seed(s, tenant, agreed=140, disagreed=60, at=now - timedelta(hours=2))
        refit.refit_tenant(s, tenant, settings)  # a map on those 200 audit reviews
        page = report_html.render(reports.report(s, tenant, settings, now=now))
    found = drift.estimate([False] * 140 + [True] * 60, [10.0] * 200)
    assert "Automated decisions wrong" in page and "30.0 %" in page
    interval = f"{found.auto_error_low_pct:.1f}-{found.auto_error_high_pct:.1f} %"
    assert f"95 % interval {interval}, 200 audit reviews" in page
    # The map's line over the bars, named with its version and reviews.
    assert page.count('class="map"') == 1
    assert "anthropic / claude-sonnet-4-5 / v2: map v1, 200 audit reviews" in page
