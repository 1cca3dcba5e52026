"""Calibration against people's labels, on real PostgreSQL: figures computed by hand from a
seeded set of reviews, the threshold advice, the overrides rule, and where the figures show
(the report's JSON and HTML, `enrichment report`, `enrichment eval --reviews`'s text; its
figures beyond these: tests/test_eval_reviews.py).

The seeded set (200 reviews, two sources) has the AI right exactly when its confidence is
at least 0.8:
    local / local-lr-v3 / no prompt:          60 right at 0.90, 40 wrong at 0.50
    anthropic / claude-sonnet-4-5 / v2:       70 right at 0.85,  4 wrong at 0.78, 26 wrong at 0.60
plus unreviewed records: 50 classified at 0.75, 30 at 0.95, and 10 never classified.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from enrichment import cli
from enrichment.cli import report as report_cli
from enrichment.core import tenants
from enrichment.core.models import Review, Tenant, utcnow
from enrichment.core.settings import get_settings
from enrichment.core.tenants import UnknownTenant
from enrichment.reporting import report_html, reports
from enrichment.reviews import calibration, decide, refit, stats
from enrichment.reviews.decide import ReviewIn
from enrichment.tooling import evaluate
from tests.factories import make_record, make_tenant

LOCAL = {"provider": "local", "model": "local-lr-v3", "prompt_version": None}
CLAUDE = {"provider": "anthropic", "model": "claude-sonnet-4-5", "prompt_version": "v2"}
AI_SAYS, PERSON_OTHERWISE = "DAMAGED_PACKAGE", "PICK_DELAY"
SEEDED = [  # (source, AI confidence, AI right, how many)
    (LOCAL, 0.90, True, 60),
    (LOCAL, 0.50, False, 40),
    (CLAUDE, 0.85, True, 70),
    (CLAUDE, 0.78, False, 4),
    (CLAUDE, 0.60, False, 26),
]
INJECTED = "<script>window.__pwned = 1</script>"
CARD = re.compile(r'<div class="label">([^<]+)</div><div class="value">([^<]+)</div>')


def seed_reviews(s, tenant: Tenant, rows=SEEDED) -> None:
    """One reviewed record per review; the person keeps the AI's label when it is right."""
    now = utcnow()
    for source, confidence, right, count in rows:
        for _ in range(count):
            label = AI_SAYS if right else PERSON_OTHERWISE
            rec = make_record(s, tenant, ai_label=AI_SAYS, ai_confidence=confidence,
                              enriched_at=now, audit_sample=True, reviewed_at=now,
                              final_label=label, decided_by="human")  # fmt: skip
            s.add(Review(tenant_id=tenant.id, record_id=rec.id, kind="audit", reviewer="ann",
                         label=label, actions=[], ai_label=AI_SAYS, ai_confidence=confidence,
                         ai_source=source))  # fmt: skip
    s.flush()


def seed_unreviewed(s, tenant: Tenant) -> None:
    now = utcnow()
    for confidence, count in ((0.75, 50), (0.95, 30)):
        for _ in range(count):
            make_record(s, tenant, ai_label=AI_SAYS, ai_confidence=confidence, enriched_at=now)
    for _ in range(10):
        make_record(s, tenant)


@pytest.fixture
def seeded(factory):
    """cal-3pl with the seeded set, and other-3pl whose reviews must not count for it."""
    with factory.begin() as s:
        tenant = make_tenant(s, "cal-3pl", confidence_threshold=0.7, settings={})
        seed_reviews(s, tenant)
        seed_unreviewed(s, tenant)
        other = make_tenant(s, "other-3pl", confidence_threshold=0.7, settings={})
        seed_reviews(s, other, [(LOCAL, 0.99, False, 30)])
    return "cal-3pl"


def measured(factory, name: str) -> calibration.Calibration:
    with factory() as s:
        return calibration.measure(s, tenants.require(s, name), get_settings())


# ---------------------------------------------------------------- pure


def test_the_fewest_reviews_are_those_whose_bound_with_none_wrong_reaches_the_target():
    # 1 - 0.05 ** (1 / n) <= 0.05 from n = 59 (58.4 exactly); 0.01 needs 299
    assert stats.min_reviews(0.05) == 59
    assert stats.upper_bound(0, 59) <= 0.05 < stats.upper_bound(0, 58)
    assert stats.min_reviews(0.01) == 299


# ---------------------------------------------------------------- on the database


def test_figures_per_source_and_overall_match_the_hand_computed_ones(factory, seeded):
    cal = measured(factory, seeded)

    # anthropic: acc 70/100; ECE .70*.15 + .04*.78 + .26*.60 = .2922
    # local:     acc 60/100; ECE .60*.10 + .40*.50 = .26
    # all:       acc 130/200; ECE (60*.1 + 70*.15 + 4*.78 + 26*.6 + 40*.5) / 200 = .2761
    by_provider = {g.provider: g for g in cal.groups}
    assert [g.provider for g in cal.groups] == ["anthropic", "local"]
    assert (by_provider["anthropic"].model, by_provider["anthropic"].prompt_version) == (
        "claude-sonnet-4-5",
        "v2",
    )
    assert by_provider["anthropic"].reviews == 100
    assert by_provider["anthropic"].accuracy == pytest.approx(0.70)
    assert by_provider["anthropic"].ece == pytest.approx(0.2922)
    assert by_provider["local"].prompt_version is None
    assert by_provider["local"].accuracy == pytest.approx(0.60)
    assert by_provider["local"].ece == pytest.approx(0.26)
    assert cal.reviews == cal.overall.reviews == 200  # other-3pl's 30 reviews do not count
    assert cal.overall.accuracy == pytest.approx(0.65)
    assert cal.overall.ece == pytest.approx(0.2761)
    seventh = cal.bins[7]  # [0.7, 0.8): the four wrong answers at 0.78
    assert (seventh.reviews, seventh.mean_confidence, seventh.accuracy) == (4, 0.78, 0.0)
    assert cal.bins[0].reviews == 0 and cal.bins[0].accuracy is None


def test_the_advice_is_the_error_budget_search_auto_threshold_applies(factory, seeded):
    advice = measured(factory, seeded).advice

    # Raw confidences (no map stored yet), equal weights: at 0.78, 4 wrong of 134 has an
    # upper bound over 5 %; at 0.85, 0 wrong of 130: 1 - 0.05 ** (1 / 130) = 2.28 %.
    assert advice.status == "advice" and advice.scale == "raw"
    assert (advice.reviews, advice.min_reviews, advice.target_error_pct) == (200, 59, 5.0)
    assert advice.threshold == 0.85
    assert (advice.automated_reviews, advice.error_pct) == (130, 0.0)
    assert advice.error_upper_pct == pytest.approx(100 * (1 - 0.05 ** (1 / 130)))
    # Below 0.85: 40 at 0.5, 26 at 0.6 and 4 at 0.78 reviewed, and the 50 unreviewed at 0.75.
    assert advice.would_review_records == 120
    assert advice.classified_records == 280  # the 10 never classified are not counted
    assert (advice.current_threshold, advice.current_review_records) == (0.7, 66)
    assert advice.words.startswith(
        "a threshold of 0.85 on the raw confidence keeps automated decisions wrong at most 5 %"
    )
    assert "0.0 % wrong among the 130 audit reviews at or above it, upper bound 2.3 %" in (
        advice.words
    )
    assert "120 of 280 classified records to review" in advice.words
    assert advice.words.endswith("Advice only: nothing was changed")


def test_the_advice_is_what_beat_applies_on_the_calibrated_scale(factory, seeded, settings):
    # Given the tenant's stored maps and auto_threshold on
    with factory.begin() as s:
        tenant = tenants.require(s, seeded)
        tenant.settings = {"auto_threshold": True}
        refit.refit_tenant(s, tenant, settings)
        applied = tenant.confidence_threshold

    advice = measured(factory, seeded).advice

    # Then the advice is the threshold beat's refit set, on the same (calibrated) scale
    assert advice.scale == "calibrated" and advice.auto_threshold
    assert advice.threshold == applied != 0.7
    assert advice.words.endswith("auto_threshold is on: beat applies it")


def test_below_the_fewest_reviews_the_advice_says_how_many_more(factory):
    with factory.begin() as s:
        tenant = make_tenant(s, "few-3pl", confidence_threshold=0.7, settings={})
        seed_reviews(s, tenant, [(LOCAL, 0.9, True, 37)])

    advice = measured(factory, "few-3pl").advice

    assert (advice.status, advice.reviews, advice.more_needed) == ("more_reviews_needed", 37, 22)
    assert advice.threshold is None
    assert advice.words == (
        "not yet: automated decisions wrong at most 5 % (one-sided 95 % upper bound) needs at "
        "least 59 audit reviews; 37 so far, 22 more needed"
    )


def test_when_no_threshold_keeps_the_budget_the_advice_says_so(factory):
    with factory.begin() as s:
        tenant = make_tenant(s, "bad-3pl", confidence_threshold=0.7, settings={})
        seed_reviews(s, tenant, [(LOCAL, 0.9, True, 90), (LOCAL, 0.95, False, 30)])

    advice = measured(factory, "bad-3pl").advice

    assert (advice.status, advice.threshold) == ("unreachable", None)
    assert advice.words.startswith(
        "no threshold at or above 0.5 keeps automated decisions wrong at most 5 %"
    )


def test_only_the_latest_review_of_a_record_counts(factory):
    # Given an escalated record the AI labelled, and one it never labelled (faults only)
    now = utcnow()
    with factory.begin() as s:
        tenant = make_tenant(s, "ovr-3pl", confidence_threshold=0.7, settings={})
        source = {"classification": CLAUDE}
        labelled = make_record(s, tenant, ai_label=AI_SAYS, ai_confidence=0.66,
                               ai_source=source, escalated_at=now)  # fmt: skip
        unlabelled = make_record(s, tenant, escalated_at=now)
        ids = labelled.id, unlabelled.id

    def review(record_id: int, label: str, *, override: bool = False) -> None:
        with factory.begin() as s:
            t = tenants.require(s, "ovr-3pl")
            review = ReviewIn(label=label, reviewer="ann", override=override)
            decide.submit(s, t, record_id, review, actor="reviewer:ann")

    # When a person disagrees with the AI, then overrides their own review to agree
    review(ids[0], PERSON_OTHERWISE)
    review(ids[1], PERSON_OTHERWISE)
    first = measured(factory, "ovr-3pl")
    review(ids[0], AI_SAYS, override=True)
    second = measured(factory, "ovr-3pl")

    # Then each time the record counts once, with its latest review, at the AI's confidence
    # then; the record the AI never labelled says nothing about its labels
    assert (first.reviews, first.overall.accuracy) == (1, 0.0)
    assert (second.reviews, second.overall.accuracy) == (1, 1.0)
    assert (second.groups[0].provider, second.groups[0].model) == ("anthropic", "claude-sonnet-4-5")
    assert second.bins[6].reviews == 1 and second.bins[6].mean_confidence == 0.66
    assert second.advice.reviews == 0  # an escalation: not in the audit sample
    assert second.advice.more_needed == 59


# ---------------------------------------------------------------- where the figures show


def test_the_report_json_and_html_carry_the_figures(factory, seeded, settings):
    now = utcnow()
    with factory.begin() as s:
        tenant = tenants.require(s, seeded)
        make_record(s, tenant, escalated_at=now - timedelta(minutes=30))
    with factory() as s:
        rep = reports.report(s, tenants.require(s, seeded), settings, now=now)
    data = rep.model_dump(mode="json")
    html = report_html.render(rep)

    assert data["calibration"]["overall"]["reviews"] == 200
    assert data["calibration"]["overall"]["ece"] == pytest.approx(0.2761)
    assert data["calibration"]["advice"]["threshold"] == 0.85
    assert [g["provider"] for g in data["calibration"]["groups"]] == ["anthropic", "local"]
    assert "Calibration against people" in html and "Reliability against people" in html
    assert html.count('class="rel"') == 5  # the five non-empty confidence bins
    assert html.count('class="rel-count"') == 5
    assert "0.650" in html and "0.276" in html and "0.292" in html
    assert "a threshold of 0.85 on the raw confidence keeps" in html
    # and the review counts the monitor measured: the one escalated record waits 30 min
    assert (rep.metrics.review_backlog, rep.metrics.human_resolved_records) == (1, 200)
    assert data["metrics"]["oldest_review_age_s"] == pytest.approx(1800, abs=60)
    cards = {label: value for label, value in CARD.findall(html)}
    assert cards["Review queue"] == "1 record" and cards["Oldest waiting"] == "30 min"
    assert (
        cards["Resolved by people"] == "200 records" and cards["Reviews compared"] == "200 reviews"
    )
    assert "<script" not in html


def test_the_html_escapes_stored_names_and_shows_an_empty_state(factory, settings):
    with factory.begin() as s:
        tenant = make_tenant(s, "esc-3pl", confidence_threshold=0.7, settings={})
        evil = {"provider": "local", "model": INJECTED, "prompt_version": '"><b>v9</b>'}
        seed_reviews(s, tenant, [(evil, 0.9, True, 3)])
        make_tenant(s, "none-3pl", confidence_threshold=0.7, settings={})
    with factory() as s:
        html = report_html.render(reports.report(s, tenants.require(s, "esc-3pl"), settings,
                                                 now=utcnow()))  # fmt: skip
        empty = report_html.render(
            reports.report(s, tenants.require(s, "none-3pl"), settings, now=utcnow())
        )

    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
    assert "&#34;&gt;&lt;b&gt;v9&lt;/b&gt;" in html  # markupsafe writes " as &#34;
    assert "<script" not in html and "<b>v9" not in html
    assert "Threshold advice:</strong> not yet: automated decisions wrong" in html
    assert "at least 59 audit reviews; 3 so far, 56 more needed" in html
    assert "No review yet" in empty and 'class="rel"' not in empty
    assert calibration.table_lines(measured(factory, "none-3pl"), "none-3pl") == [
        "calibration against people's labels for none-3pl: no reviews yet"
    ]


@pytest.fixture
def database_env(pg_url, monkeypatch):
    """The commands read DATABASE_URL through get_settings(): point it at the test database."""
    monkeypatch.setenv("DATABASE_URL", pg_url)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_eval_reviews_prints_each_sources_figures_and_threshold(
    factory, seeded, database_env, capsys
):
    code = evaluate.main(["--reviews", seeded])

    out = capsys.readouterr().out
    blocks = out.split("\n\n")
    assert code == 0
    assert blocks[0].startswith("confidence against people for cal-3pl: the latest review")
    assert "wrong at most 5 % (one-sided 95 % upper bound), never below 0.5" in blocks[0]
    # The AI always says DAMAGED_PACKAGE: kappa 0; macro-F1 the mean of 2*0.7/1.7 and 0.
    claude = blocks[1].splitlines()
    assert claude[0] == "anthropic / claude-sonnet-4-5 / v2: 100 audit reviews"
    assert claude[1].startswith("  accuracy 0.700 (95 % Wilson 0.604-0.781), macro-F1 0.412")
    assert claude[1].endswith("kappa 0.000") and claude[2].startswith("  ECE raw 0.292")
    # 70 right at 0.85: bound 1 - 0.05^(1/70); with the 4 wrong at 0.78 it is over 5 %.
    assert (
        claude[3] == "  threshold, raw (no map yet): 0.85, 70 reviews at or above it, "
        "error 0.0 % (upper bound 4.2 %)"
    )
    assert claude[4] == "  escalations: none"
    local = blocks[2].splitlines()
    assert local[0] == "local / local-lr-v3 / -: 100 audit reviews"
    assert local[3] == (
        "  threshold, raw (no map yet): 0.9, 60 reviews at or above it, "
        "error 0.0 % (upper bound 4.9 %)"
    )


def test_eval_reviews_without_reviews_or_tenant(factory, database_env, capsys):
    with factory.begin() as s:
        make_tenant(s, "new-3pl", confidence_threshold=0.7, settings={})

    assert evaluate.main(["--reviews", "new-3pl"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("no reviews yet for new-3pl") and out.count("\n") == 1

    with pytest.raises(UnknownTenant):
        evaluate.main(["--reviews", "nobody"])
    assert cli.main(["eval", "--reviews", "nobody"]) == 64  # EX_USAGE, not 2 (critical)
    assert capsys.readouterr().err == "enrichment: unknown tenant 'nobody'\n"


def test_enrichment_report_prints_the_calibration(factory, seeded, database_env, capsys):
    report_cli.report(seeded)

    out = capsys.readouterr().out
    assert "reviews: 0 records in the queue; 200 records resolved by people" in out
    assert "calibration against people's labels for cal-3pl: 200 reviews" in out
    assert "threshold advice: a threshold of 0.85 on the raw confidence" in out
