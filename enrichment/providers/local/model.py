"""The trained model and its calibration: reading the JSON files, scoring, calibrating.

Both files sit next to this module and are written by `python -m
enrichment.tooling.train_local`.
"""

from __future__ import annotations

import bisect
import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enrichment.core.errors import PermanentError
from enrichment.core.taxonomy import Label
from enrichment.providers.local.features import (
    ALL,
    Record,
    Signal,
    calibration_group,
    collect,
    rank,
    record_features,
)

MODEL = "rules-logreg-v2"
MODEL_PATH = Path(__file__).with_name("local_model.json")
CALIBRATION_PATH = Path(__file__).with_name("local_calibration.json")


def softmax(logits: list[float]) -> list[float]:
    top = max(logits)
    exps = [math.exp(v - top) for v in logits]
    total = sum(exps)
    return [v / total for v in exps]


@dataclass(frozen=True)
class LinearModel:
    """Multinomial logistic regression over sparse features: logits = bias + sum(x * w)."""

    labels: tuple[Label, ...]
    bias: tuple[float, ...]
    weights: dict[str, tuple[float, ...]]
    version: str

    def probabilities(self, feats: dict[str, float]) -> dict[Label, float]:
        """P(label | features) for every label; unknown features are ignored."""
        logits = list(self.bias)
        for name, value in feats.items():
            row = self.weights.get(name)
            if row is not None:
                for j, w in enumerate(row):
                    logits[j] += value * w
        return dict(zip(self.labels, softmax(logits), strict=True))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LinearModel:
        weights = {name: tuple(row) for name, row in zip(data["features"], data["weights"],
                                                         strict=True)}  # fmt: skip
        labels = tuple(Label(x) for x in data["labels"])
        return cls(labels, tuple(data["bias"]), weights, data.get("version", "?"))


@dataclass(frozen=True)
class Calibration:
    """A monotone map from the model's top probability to P(correct), by interpolation
    between isotonic-fit points (x ascending); flat beyond the first and last point."""

    xs: tuple[float, ...]
    ys: tuple[float, ...]

    def __call__(self, raw: float) -> float:
        i = bisect.bisect_left(self.xs, raw)
        if i == 0:
            return self.ys[0]
        if i == len(self.xs):
            return self.ys[-1]
        x0, x1, y0, y1 = self.xs[i - 1], self.xs[i], self.ys[i - 1], self.ys[i]
        return y0 + (y1 - y0) * (raw - x0) / (x1 - x0) if x1 > x0 else y1

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibration:
        return cls(tuple(data["x"]), tuple(data["y"]))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PermanentError(
            f"{path.name} is missing: run `python -m enrichment.tooling.train_local` to write it"
        ) from exc


@dataclass(frozen=True)
class Decision:
    """classify's answer for one record, with what it rests on."""

    label: Label
    raw: float  # the model's probability for `label`
    confidence: float  # calibrated P(correct)
    group: str  # the calibration group (features.calibration_group)
    ranked: list[tuple[Label, float]]
    signals: list[Signal]


def decide(
    model: LinearModel,
    calibrations: dict[str, Calibration],
    rec: Record,
    families: frozenset[str] = ALL,
) -> Decision:
    """The most likely label and its calibrated confidence (the provider's classify, and
    `enrichment eval` with a model fitted without the held-out style)."""
    signals = collect(rec, families)
    ranked = rank(model.probabilities(record_features(rec, signals, families)))
    group = calibration_group(signals, ranked[0][0])
    calibrate = calibrations.get(group) or calibrations["all"]
    if not signals and rec.note.raw_empty:
        # Nothing observed and nothing written: no label is supported, so say OTHER (a
        # person looks) at the model's own OTHER share, which is low: no record like this
        # was there to calibrate on.
        ranked.sort(key=lambda kv: kv[0] is not Label.OTHER)
        group, calibrate = "blank", _identity
    best, raw = ranked[0]
    confidence = round(min(1.0, max(0.0, calibrate(raw))), 3)
    return Decision(best, raw, confidence, group, ranked, signals)


def _identity(raw: float) -> float:
    return raw


@functools.cache
def load_model(model_path: Path = MODEL_PATH, calibration_path: Path = CALIBRATION_PATH):
    """The shipped model and its calibration per group, read once per process (a few ms,
    no network): (LinearModel, {group: Calibration}) for the groups of
    `features.calibration_group` ("evidence", "conflict", "text") that had enough records
    to fit, and "all" (every group pooled) for the others."""
    model = LinearModel.from_json(_read_json(model_path))
    groups = _read_json(calibration_path)["groups"]
    return model, {name: Calibration.from_json(fit) for name, fit in groups.items()}
