"""Calibration in production (issue 24) on real PostgreSQL: an overconfident model's records
run through the real pipeline, people review the audit sample from the records' reference
labels, beat's refit fits a map and (with auto_threshold) moves the threshold, and the next
records are calibrated and automated within the error budget."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from enrichment.core import audit
from enrichment.core.calibration_maps import StoredMap, latest_maps
from enrichment.core.models import ExceptionRecord, Review, Tenant, utcnow
from enrichment.core.pipeline import run_stage
from enrichment.core.provider import StageCall, Usage
from enrichment.core.schemas import Classification, Resolution
from enrichment.core.settings import ReviewConfig
from enrichment.core.story import story
from enrichment.core.taxonomy import ALLOWED_ACTIONS, Label
from enrichment.reviews import decide, refit, stats
from enrichment.reviews.report import load
from tests.conftest import with_settings
from tests.factories import make_record, make_tenant
from tests.fleet import wait_for
from tests.scripted import GOOD

RIGHT, WRONG = Label.DAMAGED_PACKAGE, Label.PICK_DELAY
SOURCE = ("scripted", "script-1", "v-test")
# (AI confidence, records, of them right): says 0.95 on answers right 70 % of the time, and
# 0.99 on answers that are always right.
MIX = ((0.95, 80, 56), (0.99, 80, 80))


class Overconfident:
    """Answers each record as the test planned it (its label and confidence by record id)."""

    name = "scripted"

    def __init__(self) -> None:
        self.plan: dict[int, tuple[Label, float]] = {}

    def _call(self, result) -> StageCall:
        return StageCall(result, *SOURCE, Usage(10, 5, 0, 0, 0.0001))

    def analyze(self, ctx):
        return self._call(GOOD["analyze"])

    def classify(self, ctx):
        label, confidence = self.plan[ctx.record_id]
        return self._call(Classification(label=label, confidence=confidence, notes="scan"))

    def resolve(self, ctx):
        allowed = sorted(ALLOWED_ACTIONS[ctx.classification.label])[:1]
        return self._call(Resolution(automatable=True, actions=allowed, rationale="as planned"))


def batch(factory, provider, tenant_id: int, tag: str) -> list[int]:
    """MIX's records, each leased and planned: right answers carry the reference label."""
    ids = []
    with factory.begin() as s:
        tenant = s.get(Tenant, tenant_id)
        for confidence, n, right in MIX:
            for i in range(n):
                rec = make_record(s, tenant, severity="low", reference_label=str(RIGHT),
                                  lease_token=f"{tag}-{confidence}-{i}")  # fmt: skip
                provider.plan[rec.id] = (RIGHT if i < right else WRONG, confidence)
                ids.append(rec.id)
    return ids


def run_all(factory, provider, settings, ids: list[int]) -> None:
    for record_id in ids:
        with factory() as s:
            token = s.get(ExceptionRecord, record_id).lease_token
        for stage in ("order_analysis", "classification", "automation"):
            out = run_stage(factory, provider, settings, stage=stage, record_id=record_id,
                            lease_token=token)  # fmt: skip
            if out.kind != "continue":
                break


def fields_of(s, record_id: int):
    rec = s.get(ExceptionRecord, record_id)
    return story(s, s.get(Tenant, rec.tenant_id), rec.external_id, now=utcnow()).record


def review_audit_sample(factory, tenant_id: int) -> int:
    """People label every audit-sampled record with its reference label."""
    with factory.begin() as s:
        tenant = s.get(Tenant, tenant_id)
        sampled = s.scalars(
            select(ExceptionRecord).where(
                ExceptionRecord.tenant_id == tenant_id,
                ExceptionRecord.audit_sample,
                ExceptionRecord.reviewed_at.is_(None),
            )
        ).all()
        for rec in sampled:
            review = decide.ReviewIn(label=rec.reference_label, reviewer=None)
            decide.submit(s, tenant, rec.id, review, actor="api-key:test")
    return len(sampled)


@pytest.fixture
def loop(factory, settings):
    settings = with_settings(settings, max_retries=5)
    with factory.begin() as s:
        own = {"audit_rate": 1.0, "max_auto_error_rate": 0.05, "auto_threshold": True}
        tenant_id = make_tenant(s, "over-3pl", confidence_threshold=0.7, settings=own).id
    return settings, tenant_id, Overconfident()


def test_refit_calibrates_moves_the_threshold_and_holds_automation_to_the_budget(factory, loop):
    settings, tenant_id, provider = loop
    # Given: before any map, the raw 0.95 and 0.99 clear 0.7, so every record is automated
    # (uncalibrated), and the audit rate of 1 samples each one with probability 1.
    first = batch(factory, provider, tenant_id, "a")
    run_all(factory, provider, settings, first)
    with factory() as s:
        recs = [s.get(ExceptionRecord, i) for i in first]
        assert all(r.enriched_at is not None and r.ai_calibrated_confidence is None for r in recs)
        assert {r.sampling_probability for r in recs} == {1.0}
        assert fields_of(s, first[0]).calibration == "uncalibrated"
    assert review_audit_sample(factory, tenant_id) == 160
    with factory() as s:
        assert {r.sampling_probability for r in s.scalars(select(Review))} == {1.0}

    # When beat's refit runs.
    with factory.begin() as s:
        done = refit.refit_tenant(s, s.get(Tenant, tenant_id), settings)

    # Then: one map (v1) on the 160 reviews, whose 0.95 says what people saw (56 of 80).
    assert done.fitted == [(SOURCE, 1, 160)]
    with factory() as s:
        current = latest_maps(s, tenant_id)[SOURCE]
        tenant = s.get(Tenant, tenant_id)
        [row] = s.scalars(
            select(audit.AuditEntry).where(audit.AuditEntry.action == audit.THRESHOLD_CHANGED)
        ).all()
    low, high = stats.wilson(56, 80)
    assert current.version == 1 and low <= current.map.apply(0.95) <= high
    assert current.map.apply(0.99) >= stats.wilson(80, 80)[0]
    # The threshold moved to the calibrated value of the always-right answers, and it is
    # audited: 0.95's 30 % errors can never be automated within 5 %.
    assert tenant.confidence_threshold == pytest.approx(current.map.apply(0.99))
    assert done.threshold == (0.7, tenant.confidence_threshold)
    assert (row.action, row.actor, row.subject) == (
        audit.THRESHOLD_CHANGED,
        "fleet:auto-threshold",
        "over-3pl",
    )
    assert row.details["from"] == 0.7 and row.details["to"] == tenant.confidence_threshold
    assert row.details["bound"] <= 0.05 and row.details["reviews"] == 80

    # When the next records arrive: each calibrated by map v1, and only those whose
    # calibrated confidence clears the new threshold are automated.
    second = batch(factory, provider, tenant_id, "b")
    run_all(factory, provider, settings, second)
    with factory() as s:
        recs = [s.get(ExceptionRecord, i) for i in second]
        story = fields_of(s, second[0])
    assert {r.calibration_version for r in recs} == {1}
    hard = [r for r in recs if r.ai_confidence == 0.95]
    assert {round(r.ai_calibrated_confidence, 6) for r in hard} == {
        round(current.map.apply(0.95), 6)
    }
    assert story.calibration == f"calibrated {current.map.apply(0.95):.2f} (map v1)"
    assert story.ai_confidence == 0.95  # what the model said stays as it said it
    automated = [r for r in recs if r.enriched_at is not None]
    assert len(automated) == 80 and all(r.ai_confidence == 0.99 for r in automated)
    wrong = sum(r.ai_label != r.reference_label for r in automated)
    assert wrong / len(automated) <= 0.05
    assert all(r.enriched_at is None and r.escalated_at is None for r in hard)  # rechecked

    # A second run with nothing new changes nothing: no map version, no audit row.
    with factory.begin() as s:
        again = refit.refit_tenant(s, s.get(Tenant, tenant_id), settings)
        assert (again.fitted, again.threshold) == ([], None)
        assert len(s.scalars(select(StoredMap)).all()) == 1


def test_a_map_is_refitted_only_after_enough_new_reviews_and_every_version_is_kept(factory, loop):
    settings, tenant_id, provider = loop
    settings = with_settings(settings, reviews=ReviewConfig(audit_rate=0.0, refit_reviews=100))
    with factory.begin() as s:  # advice only, and a threshold every answer clears
        tenant = s.get(Tenant, tenant_id)
        tenant.settings, tenant.confidence_threshold = {"audit_rate": 1.0}, 0.5
    run_all(factory, provider, settings, batch(factory, provider, tenant_id, "a"))
    review_audit_sample(factory, tenant_id)
    with factory.begin() as s:
        assert refit.due_tenants(s, 100) == [tenant_id]
        refit.refit_tenant(s, s.get(Tenant, tenant_id), settings)
    with factory() as s:
        assert refit.due_tenants(s, 100) == []  # nothing new: one count, no tenant read
    # 160 more reviews: over the 100 a refit needs; the first run had none new.
    run_all(factory, provider, settings, batch(factory, provider, tenant_id, "b"))
    review_audit_sample(factory, tenant_id)
    with factory.begin() as s:
        done = refit.refit_tenant(s, s.get(Tenant, tenant_id), settings)
        versions = s.scalars(select(StoredMap.version).order_by(StoredMap.version)).all()
    assert versions == [1, 2] and done.fitted == [(SOURCE, 2, 320)]


def test_reviews_are_weighted_by_their_stored_sampling_probability(factory, settings):
    # Given: 100 audit reviews, the 20 wrong ones drawn with probability 0.25 (each stands
    # for 4 records), the 80 right ones with probability 1.
    with factory.begin() as s:
        tenant = make_tenant(s, "weighted-3pl", settings={"audit_rate": 0.5})
        for i in range(100):
            wrong = i < 20
            rec = make_record(s, tenant, ai_label=str(RIGHT), ai_confidence=0.9)
            s.add(Review(tenant_id=tenant.id, record_id=rec.id, kind="audit", reviewer="ann",
                         label=str(WRONG if wrong else RIGHT), actions=[],
                         ai_label=str(RIGHT), ai_confidence=0.9,
                         sampling_probability=0.25 if wrong else 1.0))  # fmt: skip
        s.flush()
        reviewed = load(s, tenant.id, 0.5)
    # Then: the weights are 1 / the stored probabilities, and the estimate is 80 / 160.
    assert sorted({r.weight for r in reviewed}) == [1.0, 4.0]
    rate = stats.weighted_rate([r.agreed for r in reviewed], [r.weight for r in reviewed])
    assert rate == pytest.approx(80 / 160)


def test_beats_calibrate_task_refits_through_a_real_worker(inproc_worker, factory):
    from workers.tasks import calibrate_task

    # Given: 80 audit reviews at 0.99, all agreed, and 80 at 0.95, 70 % agreed.
    with factory.begin() as s:
        own = {"audit_rate": 0.5, "auto_threshold": True}
        tenant = make_tenant(s, "fleet-3pl", confidence_threshold=0.7, settings=own)
        for confidence, n, right in MIX:
            for i in range(n):
                rec = make_record(s, tenant, ai_label=str(RIGHT), ai_confidence=confidence)
                s.add(Review(tenant_id=tenant.id, record_id=rec.id, kind="audit",
                             reviewer="ann", label=str(RIGHT if i < right else WRONG),
                             actions=[], ai_label=str(RIGHT), ai_confidence=confidence,
                             ai_source=dict(zip(("provider", "model", "prompt_version"),
                                                SOURCE, strict=True)),
                             sampling_probability=0.5))  # fmt: skip
        tenant_id = tenant.id

    # When beat sends enrichment.calibrate.
    calibrate_task.apply_async()

    # Then: a map, and the threshold moved with its audit row.
    def moved() -> bool:
        with factory() as s:
            return s.get(Tenant, tenant_id).confidence_threshold != 0.7

    wait_for(moved, timeout_s=60, what="the worker's refit moved the threshold")
    with factory() as s:
        assert [m.version for m in s.scalars(select(StoredMap))] == [1]
        actions = s.scalars(select(audit.AuditEntry.action)).all()
    assert actions == [audit.THRESHOLD_CHANGED]
