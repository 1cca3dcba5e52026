"""The configured provider under each tenant's experiment and cascade: which variant answers
a record's stage, which shadows answer beside it, and whether the local model answers
classify alone. Reads only the RecordContext (`experiment`, `cascade`, filled from the
tenant's settings by core/pipeline.py); what it decides travels on the StageCall
(`variant`, `cascade`, `shadows`), and core/outcomes.py and core/shadow_answers.py write it.

- The live variant: stats.sticky_variant(record id, experiment name, weights), so every stage
  of a record, and every run, goes to the same variant.
- Shadows answer the classify stage only (the stage with a label to compare), each on a
  sticky share `shadow_rate` of the records, after the live answer; a shadow's failure is
  logged and dropped, never the record's.
- The cascade (classify only, when the configured provider is not already the local one):
  the local model answers first; when the tenant's gate admits its confidence
  (experiments/cascade.py) its answer is the record's, else the live variant's LLM answers.
  The local answer is kept as the shadow CASCADE_LOCAL either way: the gate learns from it.
- A variant that cannot be built (a prompt version or model this fleet does not have) is
  logged and the fleet's own prompt and model answer, without a variant name.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import structlog

from enrichment.core.errors import EnrichmentError
from enrichment.core.experiments import CASCADE_LOCAL, Experiment, Variant
from enrichment.core.provider import Provider, RecordContext, Shadow, StageCall
from enrichment.core.settings import ConfigurationError
from enrichment.experiments.cascade import Gates
from enrichment.providers.local import LocalProvider
from enrichment.reviews import stats

log = structlog.get_logger(__name__)


def live_variant(record_id: int, experiment: Experiment) -> Variant:
    """The live variant a record belongs to: sticky, by weight."""
    name = stats.sticky_variant(record_id, experiment.name, experiment.weights())
    return experiment.named(name)  # type: ignore[return-value]


def in_shadow(record_id: int, experiment: Experiment, variant: Variant) -> bool:
    """Whether a shadow variant answers this record: a sticky share `shadow_rate`."""
    rate = variant.shadow_rate
    split = {"in": rate, "out": 1.0 - rate}
    return stats.sticky_variant(record_id, f"{experiment.name}:{variant.name}", split) == "in"


class ExperimentProvider:
    """`base` (the configured provider) under the tenants' experiments and cascades."""

    def __init__(
        self, base: Provider, gates: Gates | None = None, *, local: Provider | None = None
    ) -> None:
        """`local`: the cascade's cheap model (default: the shipped LocalProvider)."""
        self.base, self.name, self._gates = base, base.name, gates
        self._local = local

    @property
    def model(self) -> str | None:
        return getattr(self.base, "model", None)

    def fallback(self) -> Provider | None:
        """The base's fallback, as is: while the breaker routes around an overload, no
        experiment applies (core/breaker_store.py route)."""
        return getattr(self.base, "fallback", lambda: None)()

    def close(self) -> None:
        self.base.close()

    def analyze(self, ctx: RecordContext) -> StageCall[Any]:
        return self._live("analyze", ctx)

    def resolve(self, ctx: RecordContext) -> StageCall[Any]:
        return self._live("resolve", ctx)

    def analyze_order(self, ctx: RecordContext) -> StageCall[Any]:
        return self._live("analyze_order", ctx)

    def __getattr__(self, name: str) -> Any:
        # Anything else the base offers (Message Batches calls, ...), as the base's.
        return getattr(self.base, name)

    def classify(self, ctx: RecordContext) -> StageCall[Any]:
        local = self._cascade_local(ctx)
        if local is not None and self._admits(ctx, local.call.result.confidence):
            return replace(local.call, cascade="local", shadows=(local, *self._shadows(ctx)))
        call = self._live("classify", ctx)
        if local is not None:
            call = replace(call, cascade="llm")
        return replace(call, shadows=(*([local] if local else []), *self._shadows(ctx)))

    def _live(self, stage: str, ctx: RecordContext) -> StageCall[Any]:
        if ctx.experiment is None:
            return getattr(self.base, stage)(ctx)
        variant = live_variant(ctx.record_id, ctx.experiment)
        provider = self._for(variant)
        call = getattr(provider or self.base, stage)(ctx)
        return call if provider is None else replace(call, variant=variant.name)

    def _for(self, variant: Variant) -> Provider | None:
        build = getattr(self.base, "for_variant", None)
        if build is None:
            return None
        try:
            return build(variant.prompt_version, variant.model)
        except ConfigurationError as exc:
            log.warning("experiment.variant_unusable", variant=variant.name, reason=str(exc))
            return None

    def _shadows(self, ctx: RecordContext) -> tuple[Shadow, ...]:
        exp = ctx.experiment
        if exp is None:
            return ()
        chosen = [v for v in exp.shadows if in_shadow(ctx.record_id, exp, v)]
        found = (self._shadow(v.name, self._for(v), ctx) for v in chosen)
        return tuple(s for s in found if s is not None)

    def _shadow(self, name: str, provider: Provider | None, ctx: RecordContext) -> Shadow | None:
        if provider is None:
            return None
        started = time.perf_counter()
        try:
            call = provider.classify(ctx)
        except Exception as exc:  # a shadow never fails the record: its answer is only kept
            log.warning("experiment.shadow_failed", variant=name, error=type(exc).__name__)
            return None
        return Shadow(name, call, time.perf_counter() - started)

    def _admits(self, ctx: RecordContext, confidence: float) -> bool:
        try:
            return self._gates.admits(ctx.tenant_id, confidence)  # type: ignore[union-attr]
        except Exception:  # a gate that cannot be read sends the record to the LLM, never fails it
            log.exception("cascade.gate_failed", tenant=ctx.tenant, record_id=ctx.record_id)
            return False

    def _cascade_local(self, ctx: RecordContext) -> Shadow | None:
        """The local model's answer when the tenant cascades (and the base is an LLM)."""
        if not ctx.cascade or self._gates is None or self.base.name == "local":
            return None
        if self._local is None:
            self._local = LocalProvider()
        started = time.perf_counter()
        try:
            call = self._local.classify(ctx)
        except EnrichmentError as exc:
            log.warning("cascade.local_failed", error=str(exc))
            return None
        return Shadow(CASCADE_LOCAL, call, time.perf_counter() - started)
