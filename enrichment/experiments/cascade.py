"""The cascade's gate: may the local model answer a tenant's classify stage alone?

Yes when the local answer's calibrated probability reaches the threshold at which, on this
tenant's audit reviews of the local model, the upper 95 % bound of the error rate stays
within the tenant's error budget (max_auto_error_rate; reviews/stats.py search_threshold,
never below ENRICHMENT_AUTO_THRESHOLD_FLOOR). The calibration map is the tenant's stored map
for the local source (core/calibration_maps.py) when one exists, else one fitted here on
the same reviews (stats.fit_map). No map (too few reviews) or no threshold: the LLM answers.

Which reviews: audit reviews only (the unbiased sample), each weighted by 1 / its sampling
probability, of records whose local answer is known: the record's own when the local model
gave it, or the local answer a cascade kept in shadow_answers. One gate per tenant is cached
per process for CACHE_S seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from enrichment.core import calibration_maps
from enrichment.core.experiments import CASCADE_LOCAL
from enrichment.core.models import Review, Tenant
from enrichment.core.settings import Settings
from enrichment.core.shadow_answers import ShadowAnswer
from enrichment.core.stages import Stage
from enrichment.core.tenant_settings import TenantSettings
from enrichment.reviews import stats

log = structlog.get_logger(__name__)

CACHE_S = 300.0  # a gate is refitted at most this often per process
MAX_REVIEWS = 5000  # the latest audit reviews a gate reads


@dataclass(frozen=True)
class Gate:
    map: stats.CalibrationMap | calibration_maps.CalibrationMap
    threshold: stats.Threshold
    stored: bool  # the tenant's stored map (True) or one fitted here

    def admits(self, confidence: float) -> bool:
        return self.map.apply(confidence) >= self.threshold.threshold


@dataclass(frozen=True)
class Judged:
    confidence: float
    correct: bool
    weight: float


def local_reviews(s: Session, tenant_id: int) -> list[Judged]:
    """The tenant's latest audit review per record against the local model's answer."""
    shadows = {
        r.record_id: (r.label, r.confidence)
        for r in s.execute(
            select(ShadowAnswer.record_id, ShadowAnswer.label, ShadowAnswer.confidence).where(
                ShadowAnswer.tenant_id == tenant_id,
                ShadowAnswer.variant == CASCADE_LOCAL,
                ShadowAnswer.stage == Stage.CLASSIFY,
            )
        )
    }
    reviews = s.scalars(
        select(Review)
        .where(Review.tenant_id == tenant_id, Review.kind == "audit")
        .order_by(Review.id.desc())
        .limit(MAX_REVIEWS)
    )
    latest: dict[int, Judged] = {}
    for r in reviews:
        if r.record_id in latest:
            continue  # newest first: an older review of the record was overridden
        local = _local_answer(r, shadows)
        if local is not None:
            weight = 1.0 / r.sampling_probability if r.sampling_probability else 1.0
            latest[r.record_id] = Judged(local[1], local[0] == r.label, weight)
    return list(latest.values())


def _local_answer(r: Review, shadows: dict[int, tuple[str, float]]) -> tuple[str, float] | None:
    if (r.ai_source or {}).get("provider") == "local" and r.ai_confidence is not None:
        return r.ai_label, r.ai_confidence
    return shadows.get(r.record_id)


def fit_gate(s: Session, tenant_id: int, *, target: float, floor: float) -> Gate | None:
    """The tenant's Gate, or None: too few reviews for a map, or no threshold qualifies."""
    return gate_of(
        local_reviews(s, tenant_id), target=target, floor=floor, stored=_stored_map(s, tenant_id)
    )


def gate_of(judged: Sequence[Judged], *, target: float, floor: float, stored=None) -> Gate | None:
    """The gate these judged local answers give: the `stored` map, else one fitted on them;
    the lowest calibrated threshold whose error rate's upper bound is within `target`."""
    conf = [j.confidence for j in judged]
    ok = [j.correct for j in judged]
    weights = [j.weight for j in judged]
    fitted = stored or stats.fit_map(conf, ok, weights)
    if fitted is None:
        return None
    calibrated = [fitted.apply(c) for c in conf]
    found = stats.search_threshold(calibrated, ok, weights, target=target, floor=floor)
    return None if found is None else Gate(fitted, found, stored is not None)


def _stored_map(s: Session, tenant_id: int):
    for source, current in calibration_maps.latest_maps(s, tenant_id).items():
        if source[0] == "local":
            return current.map
    return None


class Gates:
    """Each tenant's gate, fitted on first use and again after CACHE_S seconds."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        settings: Settings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._factory, self._settings, self._clock = factory, settings, clock
        self._cache: dict[int, tuple[float, Gate | None]] = {}

    def admits(self, tenant_id: int, confidence: float) -> bool:
        gate = self.gate(tenant_id)
        return gate is not None and gate.admits(confidence)

    def gate(self, tenant_id: int) -> Gate | None:
        now = self._clock()
        cached = self._cache.get(tenant_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        with self._factory() as s:
            own = TenantSettings.parse(s.get(Tenant, tenant_id).settings)
            target = own.max_auto_error_rate or self._settings.reviews.max_auto_error_rate
            gate = fit_gate(s, tenant_id, target=target, floor=self._floor())
        log.info("cascade.gate", tenant_id=tenant_id, threshold=gate and gate.threshold.threshold)
        self._cache[tenant_id] = (now + CACHE_S, gate)
        return gate

    def _floor(self) -> float:
        return self._settings.reviews.auto_threshold_floor
