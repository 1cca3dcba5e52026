"""`enrichment eval --reviews TENANT --json` on real PostgreSQL: a tenant whose AI is
overconfident (right about 70 % of the time when it says 0.95) gets a calibration map that
says so, an honest threshold (none), and its escalations counted beside the audit figures."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from enrichment.core.calibration_maps import CalibrationMap, StoredMap
from enrichment.core.models import Review, Tenant, utcnow
from enrichment.core.tenant_settings import TenantSettings, TenantSettingsError
from enrichment.reviews import refit, stats
from enrichment.tooling import evaluate
from tests.factories import make_record, make_tenant

CLAUDE = {"provider": "anthropic", "model": "claude-sonnet-4-5", "prompt_version": "v2"}
AI_SAYS, PERSON_OTHERWISE = "DAMAGED_PACKAGE", "PICK_DELAY"
OVERCONFIDENT = [  # (kind, AI confidence, agreed, disagreed)
    ("audit", 0.95, 140, 60),  # says 95 %, right 70 %
    ("audit", 0.60, 40, 60),  # says 60 %, right 40 %
    ("escalation", 0.40, 5, 15),  # the hard cases: not in the figures
]


def seed(s, tenant: Tenant, rows=OVERCONFIDENT, *, source=CLAUDE) -> None:
    now = utcnow()
    for kind, confidence, agreed, disagreed in rows:
        for label in [AI_SAYS] * agreed + [PERSON_OTHERWISE] * disagreed:
            rec = make_record(s, tenant, ai_label=AI_SAYS, ai_confidence=confidence,
                              enriched_at=now, reviewed_at=now, final_label=label,
                              decided_by="human")  # fmt: skip
            s.add(Review(tenant_id=tenant.id, record_id=rec.id, kind=kind, reviewer="ann",
                         label=label, actions=[], ai_label=AI_SAYS, ai_confidence=confidence,
                         ai_source=source))  # fmt: skip
    s.flush()


@pytest.fixture
def overconfident(factory):
    with factory.begin() as s:
        own = {"max_auto_error_rate": 0.1, "audit_rate": 0.05}
        seed(s, make_tenant(s, "over-3pl", confidence_threshold=0.7, settings=own))
        # Another tenant's perfect reviews must not count for over-3pl.
        seed(s, make_tenant(s, "other-3pl", settings={}), [("audit", 0.99, 300, 0)])
    return "over-3pl"


def test_the_json_has_each_sources_figures_and_the_map_matches_the_agreement(overconfident, cli):
    code, out, err = cli("eval", "--reviews", overconfident, "--json")

    assert (code, err) == (0, "")
    found = json.loads(out)
    assert (found["target_error_rate"], found["threshold_floor"]) == (0.1, 0.5)
    assert found["audit_rate"] == 0.05
    [source] = found["sources"]
    assert {k: source[k] for k in ("provider", "model", "prompt_version")} == CLAUDE
    assert source["reviews"] == 300  # the audit sample only
    assert source["escalations"] == {"reviews": 20, "agreed": 5, "agreement": 0.25}
    assert source["accuracy"] == pytest.approx(180 / 300)
    assert source["raw_ece"] == pytest.approx(200 / 300 * 0.25 + 100 / 300 * 0.2)
    assert source["kappa"] == pytest.approx(0.0)  # the AI always says the same label

    # The map, fitted on the audit sample, says what people saw, within their intervals.
    fitted = stats.CalibrationMap.from_json(source["calibration_map"])
    for confidence, agreed, n in ((0.95, 140, 200), (0.60, 40, 100)):
        low, high = stats.wilson(agreed, n)
        assert low <= fitted.apply(confidence) <= high
    assert fitted.apply(0.95) < 0.8  # no longer the 0.95 the AI claimed
    # Scored out of fold, the calibrated confidence is off by the sampling noise of a fifth
    # of 300 reviews (a few points, more where a fold's value crosses a bin edge), not 0.23.
    assert source["calibrated_ece_crossfit"] < 0.1 < source["raw_ece"]

    # Wrong 30 % of the time at 0.95: no threshold keeps automated errors within 10 %.
    assert (source["threshold"], source["auto_error_upper"]) == (None, None)
    # No map stored yet: the fleet decides on the raw confidence, and so does the search.
    assert (source["scale"], source["map_version"]) == ("raw", None)


def test_the_text_says_why_there_is_no_threshold_and_what_escalations_add(overconfident, cli):
    code, out, _ = cli("eval", "--reviews", overconfident)

    lines = out.splitlines()
    assert code == 0 and "wrong at most 10 %" in lines[0]
    assert lines[2] == "anthropic / claude-sonnet-4-5 / v2: 300 audit reviews"
    assert lines[5].startswith("  threshold, raw (no map yet): none qualifies")
    assert lines[6] == (
        "  escalations: 20 (not in the figures), the AI's label was the person's on 5 (25 %)"
    )


def test_a_tenant_with_clean_reviews_gets_the_lowest_threshold_its_reviews_support(factory, cli):
    with factory.begin() as s:
        tenant = make_tenant(s, "clean-3pl", settings={})
        # 100 right at 0.9 (bound 2.95 %), 3 wrong at 0.8 (with them: 3/103, bound 7.5 %).
        seed(s, tenant, [("audit", 0.9, 100, 0), ("audit", 0.8, 0, 3)])

    code, out, _ = cli("eval", "--reviews", "clean-3pl", "--json")

    [source] = json.loads(out)["sources"]
    assert code == 0 and source["threshold"] == 0.9
    assert source["auto_error_upper"] == pytest.approx(1 - 0.05 ** (1 / 100))
    assert source["calibrated_ece_crossfit"] is not None


def test_with_a_stored_map_the_threshold_is_on_the_calibrated_scale_the_fleet_decides_on(
    factory, cli, settings
):
    with factory.begin() as s:
        tenant = make_tenant(s, "mapped-3pl", confidence_threshold=0.7,
                             settings={"auto_threshold": True})  # fmt: skip
        # Raw: 100 right at 0.9, 3 wrong at 0.8 (the raw search says 0.9, as above).
        seed(s, tenant, [("audit", 0.9, 100, 0), ("audit", 0.8, 0, 3)])
        seed(s, make_tenant(s, "unmapped-3pl", settings={}), [("audit", 0.9, 100, 0)])
        # Two stored versions for Claude's source; v2, the latest, maps 0.9 -> 0.97.
        for version, y in ((1, (0.5, 0.9)), (2, (0.6, 0.97))):
            fitted = CalibrationMap(x=(0.8, 0.9), y=y, n=103, fitted_at="2026-01-01T00:00:00Z")
            s.add(StoredMap(tenant_id=tenant.id, provider="anthropic", model=CLAUDE["model"],
                            prompt_version="v2", version=version, breakpoints=fitted.to_json(),
                            reviews=103))  # fmt: skip

    code, out, _ = cli("eval", "--reviews", "mapped-3pl", "--json")

    [claude] = json.loads(out)["sources"]
    assert code == 0 and (claude["scale"], claude["map_version"]) == ("calibrated", 2)
    assert claude["threshold"] == pytest.approx(0.97)  # 0.9 through map v2, not the raw 0.9
    assert claude["auto_error_upper"] == pytest.approx(1 - 0.05 ** (1 / 100))
    _, text, _ = cli("eval", "--reviews", "mapped-3pl")
    assert "  threshold, calibrated (map v2): 0.97, 100 reviews at or above it, " in text
    # Another tenant's source of the same name has no map of its own: raw.
    _, other, _ = cli("eval", "--reviews", "unmapped-3pl", "--json")
    [raw] = json.loads(other)["sources"]
    assert (raw["scale"], raw["map_version"], raw["threshold"]) == ("raw", None, 0.9)

    # The advice is what beat's auto_threshold sets from the same reviews through the same map.
    with factory.begin() as s:
        tenant = s.scalars(select(Tenant).where(Tenant.name == "mapped-3pl")).one()
        refit.refit_tenant(s, tenant, settings)
        assert tenant.confidence_threshold == pytest.approx(claude["threshold"])


@pytest.mark.parametrize("bad", [0, 0.6, -0.1, "often"])
def test_the_tenants_target_must_be_a_rate_in_0_to_one_half(bad):
    with pytest.raises(TenantSettingsError, match="'max_auto_error_rate' must be"):
        TenantSettings.validate({"max_auto_error_rate": bad})
    assert TenantSettings.parse({"max_auto_error_rate": bad}).max_auto_error_rate is None
    assert TenantSettings.validate({"max_auto_error_rate": "0.5"}).max_auto_error_rate == 0.5


def test_json_without_reviews_is_refused_in_one_line():
    # As --drop's refusal: SystemExit with the line, printed by Python on its way out.
    with pytest.raises(SystemExit, match="^eval: --json is for --reviews TENANT"):
        evaluate.main(["--json"])
