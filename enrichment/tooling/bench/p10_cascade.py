"""P10 the cheap model first: cost per 1,000 records and agreement with the labels, the
cascade (experiments/router.py: the local model answers classify alone when its gate admits
it) against the LLM alone, on the project's labelled sets (tooling/labelled.py: the main set
and the style sets, each example once), through the fake Anthropic server, which counts
tokens as the API does (priced by providers/pricing.py for ENRICHMENT_ANTHROPIC_MODEL).

In this process; no database. The gate is fitted as a tenant's would be
(experiments/cascade.py gate_of), on the local model's answers to a sticky half of the
examples standing in for audit reviews (stats.sticky_variant on the external id); both runs
are scored on the other half. The local model was trained on these sets
(tooling/train_local.py), so each example is answered by a local model fitted with its own
writing style held out (evaluate.py's leave-one-style-out, about 15 s of CPU per style), as
a tenant's unseen traffic would be.

Each record: analyze, classify, and resolve when the label is confident (the tenant
threshold, ENRICHMENT_CONFIDENCE_THRESHOLD), all through the same ExperimentProvider; the
cascade changes only who classifies. Agreement: the classify label against the set's label.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import structlog

from enrichment.core.errors import EnrichmentError
from enrichment.core.provider import RecordContext, StageCall
from enrichment.core.schemas import Classification
from enrichment.core.settings import Settings
from enrichment.experiments.cascade import Gate, Judged, gate_of
from enrichment.experiments.router import ExperimentProvider
from enrichment.providers import local
from enrichment.providers.anthropic import AnthropicProvider
from enrichment.reviews import stats
from enrichment.tooling import labelled
from enrichment.tooling.bench.common import Options, Row, Services
from enrichment.tooling.fake_anthropic import FakeAnthropic

log = structlog.get_logger(__name__)

KEY = "sk-bench-p10"
TARGET = 1.0  # the cascade costs less than the LLM alone (it saves classify calls only) ...
MAX_AGREEMENT_LOSS = 0.02  # ... and agrees with the labels within 2 points of it


@dataclass
class _FixedGates:
    """The Gates interface over one gate, for every tenant."""

    gate: Gate | None

    def admits(self, tenant_id: int, confidence: float) -> bool:
        return self.gate is not None and self.gate.admits(confidence)


class HeldOutLocal:
    """The local provider's classify, each example by the model fitted without its style."""

    name = "local"

    def __init__(self, examples: list[labelled.Example]) -> None:
        from enrichment.tooling import train_local

        self._families = frozenset(local.FAMILIES)
        self._style = {_key(e.ctx): e.style for e in examples}
        generated = train_local.generated_examples(train_local.GENERATED_COUNT)
        extra = train_local.featurize(generated, self._families)
        self._models: dict[str, tuple[Any, Any]] = {}
        for style in labelled.by_style(examples):
            rest = [e for e in examples if e.style != style]
            fitted = train_local.fit(train_local.featurize(rest, self._families), extra)
            cals = train_local.calibrations_from(fitted["calibration"]["groups"])
            self._models[style] = (local.LinearModel.from_json(fitted["model"]), cals)

    def classify(self, ctx: RecordContext) -> StageCall[Classification]:
        model, cals = self._models[self._style[_key(ctx)]]
        d = local.decide(model, cals, local.read(ctx), self._families)
        result = Classification(label=d.label, confidence=d.confidence, notes=d.group)
        return StageCall(result, "local", local.MODEL, None)


def _key(ctx: RecordContext) -> str:
    return f"{ctx.tenant}|{ctx.reason_code}|{ctx.notes}|{ctx.order.get('name')}|{ctx.events}"


def _split(examples: list[labelled.Example]) -> tuple[list, list]:
    halves: dict[str, list] = {"reviewed": [], "scored": []}
    for e in examples:
        halves[stats.sticky_variant(e.external_id, "p10", {"reviewed": 1, "scored": 1})].append(e)
    return halves["reviewed"], halves["scored"]


def fit(reviewed: list, held_out: HeldOutLocal, settings: Settings) -> Gate | None:
    judged = []
    for e in reviewed:
        answer = held_out.classify(e.ctx).result
        judged.append(Judged(answer.confidence, answer.label == e.label, 1.0))
    target = settings.reviews.max_auto_error_rate
    return gate_of(judged, target=target, floor=settings.reviews.auto_threshold_floor)


def run(provider: ExperimentProvider, examples: list, *, cascade: bool, threshold: float):
    """Figures of one run: cost, agreement, and who classified."""
    usd, agreed, by_local, failed = 0.0, 0, 0, 0
    for i, e in enumerate(examples):
        ctx = replace(e.ctx, record_id=i + 1, tenant_id=1, cascade=cascade)
        try:
            analysis = provider.analyze(ctx)
            call = provider.classify(replace(ctx, analysis=analysis.result))
            usd += analysis.usage.cost_usd + call.usage.cost_usd
            if call.result.confidence >= threshold:
                done = provider.resolve(replace(ctx, classification=call.result))
                usd += done.usage.cost_usd
        except EnrichmentError:
            failed += 1
            continue
        agreed += call.result.label == e.label
        by_local += call.cascade == "local"
    n = len(examples)
    return {
        "records": n,
        "usd_per_1000": usd * 1000.0 / n,
        "agreement": agreed / n,
        "classified_by_local_pct": 100.0 * by_local / n,
        "failed": failed,
    }


def bench_p10(services: Services, opts: Options) -> list[Row]:
    # The main set and the style sets overlap: each example once.
    examples = list({e.external_id: e for e in labelled.load() + labelled.load_styles()}.values())
    reviewed, scored = _split(examples)
    held_out = HeldOutLocal(examples)
    with FakeAnthropic(api_key=KEY) as fake:
        settings = Settings(anthropic_api_key=KEY, anthropic_base_url=fake.base_url)
        gate = fit(reviewed, held_out, settings)
        llm = AnthropicProvider(settings)
        try:
            gates = _FixedGates(gate)
            provider = ExperimentProvider(llm, gates, local=held_out)  # type: ignore[arg-type]
            threshold = settings.confidence_threshold
            alone = run(provider, scored, cascade=False, threshold=threshold)
            cascade = run(provider, scored, cascade=True, threshold=threshold)
        finally:
            llm.close()
    return [_row(alone, cascade, gate, len(reviewed), settings)]


def _row(alone: dict, cascade: dict, gate: Gate | None, reviewed: int, settings) -> Row:
    ratio = cascade["usd_per_1000"] / alone["usd_per_1000"] if alone["usd_per_1000"] else 0.0
    loss = alone["agreement"] - cascade["agreement"]
    data: dict[str, Any] = {
        "llm_alone": alone,
        "cascade": cascade,
        "gate_reviews": reviewed,
        "gate_threshold": gate and gate.threshold.threshold,
        "gate_error_upper": gate and gate.threshold.upper,
        "model": settings.anthropic_model,
    }
    log.info("bench.p10", **data)
    return Row(
        f"P10 cascade, {cascade['records']} labelled records (gate on {reviewed})",
        f"cascade ${cascade['usd_per_1000']:.3f}/1,000, agreement {cascade['agreement']:.3f},"
        f" local classified {cascade['classified_by_local_pct']:.0f} %",
        f"LLM alone ${alone['usd_per_1000']:.3f}/1,000, agreement {alone['agreement']:.3f}",
        f"{ratio:.2f}x",
        f"< {TARGET:g}x cost, agreement not {MAX_AGREEMENT_LOSS:.2f} below",
        ratio < TARGET and loss <= MAX_AGREEMENT_LOSS,
        data,
    )
