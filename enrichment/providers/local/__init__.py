"""The local provider: evidence from the record's structure first, words second, a small
trained model over both; no network, no key.

analyze collects weighted evidence: what the events are and when they happened (SLA breaches,
waits, scan gaps), carrier codes, delivery attempts, payment and allocation results, the
shipping address, then phrases in the ops notes and the reason code. classify feeds that
evidence, the rules' per-label totals and the words of the notes into a multinomial logistic
regression (`local_model.json`), and maps its top probability to a confidence through an
isotonic fit per evidence group (`local_calibration.json`), fitted on writing styles the
model was not trained on. Both files are written by `python -m enrichment.tooling.train_local`.
A note that tries to instruct the AI is not read at all. resolve picks allow-listed actions for
the classified label. The same input always gives the same output; nothing here is random,
and `reference_label` is never seen.

Layout: `rules` (weights and tables), `lexicon` (note phrases, several languages), `text`
(folding, injections, word features), `evidence` (events, timing, payload), `features` (the
families put together), `model` (the JSON files, scoring, calibration), `actions` (what
resolve may do).
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

from enrichment.core.errors import PermanentError, TransientError
from enrichment.core.models import utcnow
from enrichment.core.provider import RecordContext, StageCall
from enrichment.core.schemas import Analysis, Classification, OrderAnalysis, Resolution
from enrichment.providers.local import orders
from enrichment.providers.local.actions import plan
from enrichment.providers.local.features import (
    FAMILIES,
    calibration_group,
    collect,
    read,
    record_features,
)
from enrichment.providers.local.model import (
    CALIBRATION_PATH,
    MODEL,
    MODEL_PATH,
    Calibration,
    LinearModel,
    decide,
    load_model,
)
from enrichment.providers.prompts import load as load_prompts

__all__ = [
    "CALIBRATION_PATH",
    "FAMILIES",
    "MODEL",
    "MODEL_PATH",
    "Calibration",
    "LinearModel",
    "LocalProvider",
    "RecordContext",
    "calibration_group",
    "collect",
    "decide",
    "load_model",
    "read",
    "record_features",
]


def _fraction(*parts: object) -> float:
    """A stable number in [0, 1) from the parts (blake2b, not hash(): that is salted)."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class LocalProvider:
    """Rules plus a calibrated linear model. `fault_rate` in [0, 1] (default 0): share of
    calls that fail with TransientError on purpose, chosen by (record, stage, attempt), for
    drills. The model files are read on the first classify, once per process."""

    name = "local"
    prompt_version: str | None = None  # an experiment variant's, reported (never read)

    def __init__(self, fault_rate: float = 0.0) -> None:
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError(f"fault_rate={fault_rate} must be in [0, 1]")
        self.fault_rate = fault_rate

    def close(self) -> None:
        """Nothing to release: no clients, no open files (the model is plain data)."""

    def _call(self, result: Any) -> StageCall[Any]:
        return StageCall(
            result=result, provider=self.name, model=MODEL, prompt_version=self.prompt_version
        )

    def for_variant(self, prompt_version: str | None, model: str | None) -> LocalProvider:
        """This provider under an experiment variant: one model, so `model` is ignored; the
        prompt version must exist (ConfigurationError) and is reported on its answers, so an
        experiment's bookkeeping runs the same on the embedded provider."""
        if prompt_version is None or prompt_version == self.prompt_version:
            return self
        load_prompts(prompt_version)
        twin = copy.copy(self)
        twin.prompt_version = prompt_version
        return twin

    def _maybe_fail(self, ctx: RecordContext, stage: str) -> None:
        if self.fault_rate and _fraction(ctx.record_id, stage, ctx.attempt) < self.fault_rate:
            raise TransientError(
                f"injected fault (fault_rate={self.fault_rate}) record={ctx.record_id} "
                f"stage={stage} attempt={ctx.attempt}"
            )

    def analyze(self, ctx: RecordContext) -> StageCall[Analysis]:
        self._maybe_fail(ctx, "analyze")
        rec = read(ctx)
        found = [s.text for s in collect(rec) if s.kind != "reason"]
        if rec.note.injected:
            found.append("notes carry instructions for the AI: not read")
        problems = list(dict.fromkeys(found))[:10]
        summary = (
            f"{len(problems)} problem signal(s) in events, payload and notes; "
            f"strongest: {problems[0]}"
            if problems
            else "No problem found in events, payload or notes."
        )
        return self._call(Analysis(problems=problems, summary=summary[:2000]))

    def classify(self, ctx: RecordContext) -> StageCall[Classification]:
        """The model's most likely label; confidence is its calibrated P(correct).

        The analysis is not read: for this provider it is a function of the same record,
        and the model was trained without it.
        """
        self._maybe_fail(ctx, "classify")
        model, calibrations = load_model()
        d = decide(model, calibrations, read(ctx))
        top = ", ".join(f"{label}={p:.2f}" for label, p in d.ranked[:3])
        support = "; ".join(s.text for s in d.signals if s.label is d.label)[:1500]
        notes = (
            f"model p: {top}; calibrated ({d.group}) confidence {d.confidence} (raw "
            f"{d.raw:.3f}, runner-up {d.ranked[1][0]}). evidence for {d.label}: "
            f"{support or 'none'}"
        )
        result = Classification(label=d.label, confidence=d.confidence, notes=notes[:2000])
        return self._call(result)

    def resolve(self, ctx: RecordContext) -> StageCall[Resolution]:
        self._maybe_fail(ctx, "resolve")
        if ctx.classification is None:
            raise PermanentError("resolve called without a classification")
        actions, why = plan(ctx, ctx.classification.label)
        result = Resolution(automatable=bool(actions), actions=actions, rationale=why)
        return self._call(result)

    def analyze_order(self, ctx: RecordContext) -> StageCall[OrderAnalysis]:
        """A watched order's problems as of `ctx.as_of` (providers/local/orders.py)."""
        self._maybe_fail(ctx, "analyze_order")
        return self._call(orders.analyze_order(ctx, ctx.as_of or utcnow()))
