"""An experiment's variants against people (`enrichment experiment report`, and
GET /api/enrichment/experiments/{tenant}).

Per variant, on the tenant's audit sample (the latest review of each record, where it is an
audit review; escalations are left out: each variant's own confidence chose them, so they
would favour whichever escalates least), each review weighted by 1 / its sampling
probability (Horvitz-Thompson, as reviews/report.py): accuracy with its Wilson 95 % interval
on Kish's effective n, ECE; per-label and macro F1 and Cohen's kappa against the reviewers,
unweighted; and the cost and latency per record (a live variant: all its attempts, every stage, over
the records it answered; a shadow: its one classify call). A live variant's answer is the
one the review saw (`reviews.ai_source["variant"]`); a shadow's, its `shadow_answers` row.

Pairs: each shadow against each live variant on the records both answered (McNemar,
reviews/stats.py), with the verdict in words. Two live variants never answer the same
record, so between them the comparison is unpaired: "better" or "worse" only when their
Wilson intervals do not overlap (conservative), else "not yet distinguishable".
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from enrichment.core.experiments import Experiment
from enrichment.core.models import EnrichmentAttempt, ExceptionRecord, Review
from enrichment.core.shadow_answers import ShadowAnswer
from enrichment.core.stages import Stage
from enrichment.reviews import stats
from enrichment.reviews.report import AUDIT

MAX_REVIEWS = 20_000  # the latest reviews a report reads


@dataclass(frozen=True)
class Answer:
    label: str
    confidence: float


@dataclass
class VariantRow:
    name: str
    kind: str  # "live" or "shadow"
    reviewed: int
    accuracy: float | None
    accuracy_low: float | None
    accuracy_high: float | None
    macro_f1: float | None
    kappa: float | None
    ece: float | None
    per_label: dict[str, dict] = field(default_factory=dict)
    records: int = 0
    cost_per_record_usd: float | None = None
    latency_per_record_s: float | None = None


@dataclass
class PairRow:
    baseline: str
    candidate: str
    paired: int  # reviewed records both answered (0: unpaired, live against live)
    gains: int | None
    losses: int | None
    pvalue: float | None
    test: str  # "mcnemar exact", "mcnemar chi2", "wilson overlap"
    verdict: str


@dataclass
class Report:
    tenant: str
    experiment: str | None
    variants: list[VariantRow]
    pairs: list[PairRow]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def build(s: Session, tenant_id: int, tenant: str, experiment: Experiment | None) -> Report:
    truth = _truth(s, tenant_id)
    live, shadow = _live_answers(truth), _shadow_answers(s, tenant_id)
    names = _names(experiment, live, shadow)
    costs = _live_costs(s, tenant_id)
    rows = [_row(n, "live", live[n], truth, costs.get(n)) for n in names["live"]]
    rows += [
        _row(n, "shadow", shadow[n], truth, _shadow_cost(s, tenant_id, n)) for n in names["shadow"]
    ]
    pairs = [
        _paired(b, c, live[b], shadow[c], truth) for b in names["live"] for c in names["shadow"]
    ]
    by_name = {r.name: r for r in rows}
    first, *others = names["live"] or [None]
    pairs += [_unpaired(by_name[first], by_name[o]) for o in others]
    return Report(tenant, experiment.name if experiment else None, rows, pairs)


def _names(experiment: Experiment | None, live: dict, shadow: dict) -> dict[str, list[str]]:
    """The variants to show: the experiment's, then any others that still have answers (an
    earlier experiment's); the cascade's local answers count as a shadow."""
    declared = experiment.variants if experiment else ()
    live_names = [v.name for v in declared if not v.shadow]
    shadow_names = [v.name for v in declared if v.shadow]
    live_names += sorted(set(live) - set(live_names))
    shadow_names += sorted(set(shadow) - set(shadow_names))
    return {"live": live_names, "shadow": shadow_names}


def _truth(s: Session, tenant_id: int) -> dict[int, Review]:
    """The latest review of each reviewed record (a later one overrides), where it is an
    audit review."""
    reviews = s.scalars(
        select(Review)
        .where(Review.tenant_id == tenant_id)
        .order_by(Review.id.desc())
        .limit(MAX_REVIEWS)
    )
    latest: dict[int, Review] = {}
    for r in reviews:
        latest.setdefault(r.record_id, r)
    return {i: r for i, r in latest.items() if r.kind == AUDIT}


def _weight(r: Review) -> float:
    """1 / the record's sampling probability; 1 for reviews older than that column."""
    return 1 / r.sampling_probability if r.sampling_probability else 1.0


def _live_answers(truth: dict[int, Review]) -> dict[str, dict[int, Answer]]:
    found: dict[str, dict[int, Answer]] = defaultdict(dict)
    for r in truth.values():
        variant = (r.ai_source or {}).get("variant")
        if variant and r.ai_label is not None and r.ai_confidence is not None:
            found[variant][r.record_id] = Answer(r.ai_label, r.ai_confidence)
    return found


def _shadow_answers(s: Session, tenant_id: int) -> dict[str, dict[int, Answer]]:
    found: dict[str, dict[int, Answer]] = defaultdict(dict)
    rows = s.execute(
        select(
            ShadowAnswer.variant,
            ShadowAnswer.record_id,
            ShadowAnswer.label,
            ShadowAnswer.confidence,
        )
        .where(ShadowAnswer.tenant_id == tenant_id, ShadowAnswer.stage == Stage.CLASSIFY)
        .order_by(ShadowAnswer.id)
    )
    for variant, record_id, label, confidence in rows:
        found[variant][record_id] = Answer(label, confidence)  # the latest answer wins
    return found


def _live_costs(s: Session, tenant_id: int) -> dict[str, tuple[int, float, float]]:
    """Per live variant: (records, cost, latency) over all attempts of its records."""
    R, A = ExceptionRecord, EnrichmentAttempt
    variant = R.ai_source[Stage.CLASSIFY.value]["variant"].as_string()
    per_record = (
        select(A.record_id, func.sum(A.cost_usd).label("cost"), func.sum(A.latency_s).label("lat"))
        .where(A.tenant_id == tenant_id)
        .group_by(A.record_id)
        .subquery()
    )
    rows = s.execute(
        select(variant, func.count(), func.sum(per_record.c.cost), func.sum(per_record.c.lat))
        .join(per_record, per_record.c.record_id == R.id)
        .where(R.tenant_id == tenant_id, variant.is_not(None))
        .group_by(variant)
    )
    return {name: (n, float(cost or 0), float(lat or 0)) for name, n, cost, lat in rows}


def _shadow_cost(s: Session, tenant_id: int, variant: str) -> tuple[int, float, float]:
    n, cost, lat = s.execute(
        select(
            func.count(), func.sum(ShadowAnswer.cost_usd), func.sum(ShadowAnswer.latency_s)
        ).where(ShadowAnswer.tenant_id == tenant_id, ShadowAnswer.variant == variant)
    ).one()
    return n, float(cost or 0), float(lat or 0)


def _row(
    name: str,
    kind: str,
    answers: dict[int, Answer],
    truth: dict[int, Review],
    cost: tuple[int, float, float] | None,
) -> VariantRow:
    ids = [i for i in answers if i in truth]
    people = [truth[i].label for i in ids]
    said = [answers[i].label for i in ids]
    correct = [p == a for p, a in zip(people, said, strict=True)]
    weights = [_weight(truth[i]) for i in ids]
    n, accuracy = len(ids), stats.weighted_rate(correct, weights) if ids else None
    n_eff = stats.kish_n(weights)
    low, high = stats.wilson(accuracy * n_eff, n_eff) if n else (None, None)
    records, spent, waited = cost or (0, 0.0, 0.0)
    return VariantRow(
        name=name,
        kind=kind,
        reviewed=n,
        accuracy=accuracy,
        accuracy_low=low,
        accuracy_high=high,
        macro_f1=stats.macro_f1(people, said) if n else None,
        kappa=stats.kappa(people, said) if n else None,
        ece=stats.ece([answers[i].confidence for i in ids], correct, weights=weights)
        if n
        else None,
        per_label=stats.per_label(people, said) if n else {},
        records=records,
        cost_per_record_usd=spent / records if records else None,
        latency_per_record_s=waited / records if records else None,
    )


def _paired(
    baseline: str,
    candidate: str,
    base: dict[int, Answer],
    cand: dict[int, Answer],
    truth: dict[int, Review],
) -> PairRow:
    ids = [i for i in base if i in cand and i in truth]
    if not ids:
        return PairRow(
            baseline, candidate, 0, None, None, None, "mcnemar", "not yet distinguishable"
        )
    b_ok = [base[i].label == truth[i].label for i in ids]
    c_ok = [cand[i].label == truth[i].label for i in ids]
    paired = stats.mcnemar_paired(b_ok, c_ok)
    test = "mcnemar exact" if paired.exact else "mcnemar chi2"
    return PairRow(
        baseline, candidate, len(ids), paired.gains, paired.losses, paired.pvalue, test,
        stats.verdict(paired),
    )  # fmt: skip


def _unpaired(baseline: VariantRow, candidate: VariantRow) -> PairRow:
    verdict = "not yet distinguishable"
    if baseline.reviewed and candidate.reviewed:
        if candidate.accuracy_low > baseline.accuracy_high:
            verdict = "better"
        elif candidate.accuracy_high < baseline.accuracy_low:
            verdict = "worse"
    return PairRow(baseline.name, candidate.name, 0, None, None, None, "wilson overlap", verdict)
