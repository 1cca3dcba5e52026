"""`enrichment eval --reviews TENANT`: how far the AI's confidence can be trusted, per
provider, model and prompt version, from people's reviews (the math: reviews/stats.py).

Which reviews count: the latest per record where the AI gave a label (calibration.py's
rule). Everything is fitted and estimated on the audit sample (kind "audit"), the only
random one: each audit review is weighted by 1 / its sampling probability, read from the
review's `sampling_probability` column when the model has one, else the tenant's audit rate
(today's uniform rate: equal weights, the plain shares). Escalations are the AI's hard cases,
chosen by its own confidence; they would bias every figure, so they are only counted beside
(how many, and how often the AI's label was the person's).

Per source: raw ECE; ECE of the calibration map, 5-fold cross-fitted; accuracy with its
Wilson 95 % interval; macro-F1 over labels and Cohen's kappa (the AI's label against the
person's; unweighted); the threshold search on the scale the fleet decides on (what the
tenant's threshold is compared with, core/calibration_maps.py `decisive`): each review's
confidence through its source's latest stored map ("calibrated (map vN)"), the raw confidence
where the source has none yet ("raw (no map yet)"), as beat's auto_threshold searches it
(reviews/refit.py). The lowest such confidence >= the floor (ENRICHMENT_AUTO_THRESHOLD_FLOOR)
whose one-sided 95 % upper bound on the error rate at or above it is within the tenant's
`max_auto_error_rate` (else ENRICHMENT_MAX_AUTO_ERROR_RATE). Advice only: nothing is changed.
`calibration_map` is a map fitted afresh on all the reviews (what the next refit would store),
not the stored map the threshold is searched through.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from enrichment.core.calibration_maps import Current, Source, latest_maps, source_of
from enrichment.core.models import Review, Tenant
from enrichment.core.settings import Settings
from enrichment.core.tenant_settings import TenantSettings
from enrichment.core.text import plural, printable
from enrichment.reviews import stats

AUDIT, ESCALATION = "audit", "escalation"


@dataclass(frozen=True)
class Reviewed:
    """One latest review: the AI's answer then, the person's label, and its weight."""

    id: int
    kind: str
    label: str
    ai_label: str
    confidence: float
    weight: float
    source: tuple[str | None, str | None, str | None]

    @property
    def agreed(self) -> bool:
        return self.ai_label == self.label


class Escalations(BaseModel):
    reviews: int
    agreed: int
    agreement: float | None = Field(description="0-1; None without escalations")


class SourceTrust(BaseModel):
    """The figures of one provider, model and prompt version; rates 0-1."""

    provider: str | None
    model: str | None
    prompt_version: str | None
    reviews: int = Field(description="audit reviews (the random sample) the figures rest on")
    n_effective: float = Field(description="Kish's effective sample size of their weights")
    raw_ece: float
    calibrated_ece_crossfit: float | None = Field(
        description="ECE of the calibrated confidence, each review scored by a map fitted "
        "without its fold; None below the reviews a map needs"
    )
    accuracy: float
    accuracy_low: float
    accuracy_high: float
    macro_f1: float
    kappa: float | None = Field(description="None when undefined (one label throughout)")
    scale: str = Field(
        description="the confidence the threshold is searched on, as the fleet decides: "
        "'calibrated' (through the source's stored map) or 'raw' (no map yet)"
    )
    map_version: int | None = Field(description="the stored map's version; None when raw")
    threshold: float | None = Field(description="the advised threshold; None: none qualifies")
    auto_reviews: int | None = Field(None, description="audit reviews at or above it")
    auto_error_rate: float | None = None
    auto_error_upper: float | None = Field(None, description="its one-sided 95 % upper bound")
    calibration_map: dict | None = Field(description="the map fitted on all of them")
    escalations: Escalations


class Trust(BaseModel):
    tenant: str
    target_error_rate: float
    threshold_floor: float
    audit_rate: float
    sources: list[SourceTrust]


def latest_reviews(session: Session, tenant_id: int) -> list[Review]:
    """The tenant's latest review per record, where the AI had given a label, by id."""
    latest = (
        select(func.max(Review.id))
        .where(Review.tenant_id == tenant_id)
        .group_by(Review.record_id)
        .scalar_subquery()
    )
    return list(
        session.scalars(
            select(Review)
            .where(
                Review.tenant_id == tenant_id,
                Review.id.in_(latest),
                Review.ai_label.is_not(None),
                Review.ai_confidence.is_not(None),
            )
            .order_by(Review.id)
        )
    )


def load(session: Session, tenant_id: int, audit_rate: float) -> list[Reviewed]:
    """The tenant's latest reviews where the AI gave a label, weighted."""
    return [_reviewed(r, audit_rate) for r in latest_reviews(session, tenant_id)]


def _reviewed(r: Review, audit_rate: float) -> Reviewed:
    # The record's draw probability copied at review time; reviews older than it (NULL) were
    # drawn at the tenant's uniform rate.
    probability = r.sampling_probability or audit_rate
    source = r.ai_source or {}
    return Reviewed(
        id=r.id,
        kind=r.kind,
        label=r.label,
        ai_label=r.ai_label,
        confidence=r.ai_confidence,
        weight=1 / probability if probability > 0 else 1.0,
        source=(source.get("provider"), source.get("model"), source.get("prompt_version")),
    )


def source_key(source: tuple[str | None, str | None, str | None]) -> Source:
    """The calibration_maps key of a review's (provider, model, prompt_version)."""
    return source_of(dict(zip(("provider", "model", "prompt_version"), source, strict=True)))


def calibrated(r: Reviewed, maps: dict[Source, Current]) -> float:
    """A review's confidence as the pipeline would compare it now: through its source's
    latest map, raw where the source has none (core/calibration_maps.py `decisive`)."""
    current = maps.get(source_key(r.source))
    return r.confidence if current is None else current.map.apply(r.confidence)


@dataclass(frozen=True)
class Budget:
    """The tenant's error budget and the threshold search over its audit reviews."""

    target: float  # the tenant's max_auto_error_rate, else ENRICHMENT_MAX_AUTO_ERROR_RATE
    floor: float  # ENRICHMENT_AUTO_THRESHOLD_FLOOR
    audit_reviews: int
    calibrated_reviews: int  # of those, scored through a stored map (the others: raw)
    found: stats.Threshold | None


def search(
    audit: Sequence[Reviewed], maps: dict[Source, Current], *, target: float, floor: float
) -> stats.Threshold | None:
    """The error-budget threshold on the scale the fleet decides on, each audit review
    weighted by 1 / its sampling probability: what beat's auto_threshold applies
    (reviews/refit.py) and what the report advises."""
    return stats.search_threshold(
        [calibrated(r, maps) for r in audit],
        [r.agreed for r in audit],
        [r.weight for r in audit],
        target=target,
        floor=floor,
    )


def budget(
    tenant: Tenant, settings: Settings, reviews: Sequence[Review], maps: dict[Source, Current]
) -> Budget:
    """The tenant's threshold search over its latest `reviews` (latest_reviews) through its
    stored `maps` (latest_maps); nothing read or written here."""
    own = TenantSettings.parse(tenant.settings)
    rate = settings.reviews.audit_rate if own.audit_rate is None else own.audit_rate
    target = own.max_auto_error_rate or settings.reviews.max_auto_error_rate
    floor = settings.reviews.auto_threshold_floor
    audit = [x for x in (_reviewed(r, rate) for r in reviews) if x.kind == AUDIT]
    return Budget(
        target=target,
        floor=floor,
        audit_reviews=len(audit),
        calibrated_reviews=sum(source_key(r.source) in maps for r in audit),
        found=search(audit, maps, target=target, floor=floor),
    )


def source_trust(
    source: tuple,
    reviewed: Sequence[Reviewed],
    *,
    target: float,
    floor: float,
    stored: Current | None = None,
) -> SourceTrust:
    """One source's figures from its reviews (audit for the figures, escalations beside);
    the threshold searched through `stored`, the source's latest map, when it has one."""
    audit = [r for r in reviewed if r.kind == AUDIT]
    escalated = [r for r in reviewed if r.kind == ESCALATION]
    conf, ok = [r.confidence for r in audit], [r.agreed for r in audit]
    weights = [r.weight for r in audit]
    accuracy, n_eff = stats.weighted_rate(ok, weights), stats.kish_n(weights)
    low, high = stats.wilson(accuracy * n_eff, n_eff) if audit else (0.0, 1.0)
    decided = conf if stored is None else [stored.map.apply(c) for c in conf]
    cut = stats.search_threshold(decided, ok, weights, target=target, floor=floor)
    fitted = stats.fit_map(conf, ok, weights)
    agreed = sum(r.agreed for r in escalated)
    return SourceTrust(
        provider=source[0],
        model=source[1],
        prompt_version=source[2],
        reviews=len(audit),
        n_effective=n_eff,
        raw_ece=stats.ece(conf, ok, weights=weights),
        calibrated_ece_crossfit=stats.crossfit_ece([r.id for r in audit], conf, ok, weights),
        accuracy=accuracy,
        accuracy_low=low,
        accuracy_high=high,
        macro_f1=stats.macro_f1([r.label for r in audit], [r.ai_label for r in audit]),
        kappa=stats.kappa([r.ai_label for r in audit], [r.label for r in audit]),
        scale="raw" if stored is None else "calibrated",
        map_version=None if stored is None else stored.version,
        threshold=cut.threshold if cut else None,
        auto_reviews=cut.reviews if cut else None,
        auto_error_rate=cut.error_rate if cut else None,
        auto_error_upper=cut.upper if cut else None,
        calibration_map=fitted.to_json() if fitted else None,
        escalations=Escalations(
            reviews=len(escalated),
            agreed=agreed,
            agreement=agreed / len(escalated) if escalated else None,
        ),
    )


def measure(session: Session, tenant: Tenant, settings: Settings) -> Trust:
    """The tenant's figures per source (nothing written)."""
    own = TenantSettings.parse(tenant.settings)
    rate = settings.reviews.audit_rate if own.audit_rate is None else own.audit_rate
    target = own.max_auto_error_rate or settings.reviews.max_auto_error_rate
    floor = settings.reviews.auto_threshold_floor
    groups: dict[tuple, list[Reviewed]] = {}
    for r in load(session, tenant.id, rate):
        groups.setdefault(r.source, []).append(r)
    ordered = sorted(groups, key=lambda k: tuple(part or "" for part in k))
    maps = latest_maps(session, tenant.id)
    return Trust(
        tenant=tenant.name,
        target_error_rate=target,
        threshold_floor=floor,
        audit_rate=rate,
        sources=[
            source_trust(k, groups[k], target=target, floor=floor, stored=maps.get(source_key(k)))
            for k in ordered
        ],
    )


# ---------------------------------------------------------------- in words


def lines(trust: Trust) -> list[str]:
    """The figures for a terminal, a block per source. Stored names made printable."""
    head = (
        f"confidence against people for {printable(trust.tenant)}: the latest review per "
        f"record where the AI gave a label; figures from the audit sample (rate "
        f"{trust.audit_rate:g}), escalations beside; threshold target: automated decisions "
        f"wrong at most {100 * trust.target_error_rate:g} % (one-sided 95 % upper bound), "
        f"never below {trust.threshold_floor:g}"
    )
    out = [head]
    for s in trust.sources:
        out += ["", *source_lines(s)]
    return out


def source_lines(s: SourceTrust) -> list[str]:
    name = " / ".join(
        printable(part, 40) or "-" for part in (s.provider, s.model, s.prompt_version)
    )
    kappa = "undefined" if s.kappa is None else f"{s.kappa:.3f}"
    crossfit = (
        f"{s.calibrated_ece_crossfit:.3f}"
        if s.calibrated_ece_crossfit is not None
        else f"- (a map needs {stats.MIN_MAP_REVIEWS} reviews)"
    )
    return [
        f"{name}: {plural(s.reviews, 'audit review')}",
        f"  accuracy {s.accuracy:.3f} (95 % Wilson {s.accuracy_low:.3f}-{s.accuracy_high:.3f}),"
        f" macro-F1 {s.macro_f1:.3f}, kappa {kappa}",
        f"  ECE raw {s.raw_ece:.3f}, calibrated {crossfit} ({stats.FOLDS}-fold cross-fitted)",
        f"  {threshold_words(s)}",
        f"  {escalation_words(s.escalations)}",
    ]


def scale_words(s: SourceTrust) -> str:
    """The confidence the threshold is on: "calibrated (map v3)" or "raw (no map yet)"."""
    return "raw (no map yet)" if s.map_version is None else f"calibrated (map v{s.map_version})"


def threshold_words(s: SourceTrust) -> str:
    scale = f"threshold, {scale_words(s)}:"
    if s.threshold is None:
        return f"{scale} none qualifies (too few reviews, or too many wrong at every confidence)"
    return (
        f"{scale} {s.threshold:.4g}, {plural(s.auto_reviews, 'review')} at or above it, "
        f"error {100 * s.auto_error_rate:.1f} % (upper bound {100 * s.auto_error_upper:.1f} %)"
    )


def escalation_words(e: Escalations) -> str:
    if not e.reviews:
        return "escalations: none"
    return (
        f"escalations: {e.reviews:,} (not in the figures), the AI's label was the person's on "
        f"{e.agreed:,} ({100 * e.agreement:.0f} %)"
    )
