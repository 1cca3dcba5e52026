"""Fit the local provider's model and calibration: `python -m enrichment.tooling.train_local`.

1. Features for every record of the shipped styled sets (`labelled.STYLES`), plus generator
   records (a fixed seed that no test uses), which teach the demo's own phrasing.
2. Out-of-style predictions: for each style, a model fitted on the *other* styles (and the
   generator records) scores it. The calibration thus sees how the model does on writing it
   was not trained on, which is what a new tenant's notes are.
3. An isotonic fit of "top label was right" against the top probability on those
   predictions, one per evidence group (`features.calibration_group`) and one pooled,
   shrunk towards the mean where a step has few records.
4. The final model on all of the training data.
`fit(examples)` is the same recipe for any subset: `enrichment eval` uses it with one style
held out. Writes enrichment/providers/local/local_model.json and local_calibration.json.
Deterministic.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from enrichment.core.taxonomy import Label
from enrichment.providers import local
from enrichment.providers.local.features import ALL, GROUPS, Signal, rank
from enrichment.tooling import generate, labelled

LABELS = tuple(Label)
GENERATED_SEED = 1001  # not 7/2/4/9: the seeds the tests and the demo use
GENERATED_COUNT = 400
GENERATED_STYLE = "generator"  # always fitted on, never held out or calibrated on
MIN_COUNT = 2  # a feature seen in one record only is noise, not signal
L2 = 0.002  # per-record L2 penalty on the weights (not the bias)
EPOCHS, LEARNING_RATE = 250, 0.05
SHRINK_RECORDS = 2.0  # pseudo-records pulling each isotonic step towards its mean score
MIN_GROUP = 40  # fewer out-of-style records than this: the group uses the pooled fit


@dataclass(frozen=True)
class Data:
    """Featurized examples: sparse rows, label indices, styles, the rule signals (the
    calibration group depends on them and on the predicted label) and whether the record
    says nothing at all (then classify answers OTHER)."""

    rows: list[dict[str, float]]
    y: np.ndarray
    styles: list[str]
    signals: list[list[Signal]]
    blank: list[bool]

    def take(self, idx: Sequence[int]) -> Data:
        pick = list(idx)
        return Data([self.rows[i] for i in pick], self.y[pick], [self.styles[i] for i in pick],
                    [self.signals[i] for i in pick], [self.blank[i] for i in pick])  # fmt: skip

    def __len__(self) -> int:
        return len(self.rows)


def featurize(examples: Sequence[labelled.Example], families: frozenset[str] = ALL) -> Data:
    rows, signals, blank = [], [], []
    for e in examples:
        rec = local.read(e.ctx)
        found = local.collect(rec, families)
        rows.append(local.record_features(rec, found, families))
        signals.append(found)
        blank.append(not found and rec.note.raw_empty)
    y = np.array([LABELS.index(e.label) for e in examples], dtype=int)
    return Data(rows, y, [e.style for e in examples], signals, blank)


def generated_examples(count: int = GENERATED_COUNT) -> list[labelled.Example]:
    cases = generate.generate_cases("train", count, GENERATED_SEED)
    return [
        labelled.Example(c.line["exception"]["external_id"], c.label,
                         labelled.to_context(c.line, record_id=i), GENERATED_STYLE)
        for i, c in enumerate(cases, start=1)
    ]  # fmt: skip


# ---------------------------------------------------------------- the linear model


def vocabulary(rows: Sequence[dict[str, float]], min_count: int = MIN_COUNT) -> list[str]:
    """Features present in at least `min_count` rows, sorted (a stable column order)."""
    counts = Counter(name for row in rows for name in row)
    return sorted(name for name, n in counts.items() if n >= min_count)


def to_matrix(rows: Sequence[dict[str, float]], vocab: Sequence[str]) -> np.ndarray:
    column = {name: j for j, name in enumerate(vocab)}
    x = np.zeros((len(rows), len(vocab)), dtype=np.float32)
    for i, row in enumerate(rows):
        for name, value in row.items():
            if name in column:
                x[i, column[name]] = value
    return x


def _softmax(logits: np.ndarray) -> np.ndarray:
    exps = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exps / exps.sum(axis=1, keepdims=True)


def fit_softmax(
    x: np.ndarray, y: np.ndarray, *, l2: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(weights d x k, bias k) of an L2-penalised multinomial logistic regression.

    Full-batch Adam from zeros for EPOCHS steps: no randomness, so the same data gives the
    same weights. `y` holds label indices.
    """
    n, k, l2 = len(y), len(LABELS), L2 if l2 is None else l2
    onehot = np.eye(k, dtype=np.float32)[y]
    params = [np.zeros((x.shape[1], k), dtype=np.float32), np.zeros(k, dtype=np.float32)]
    moments = [[np.zeros_like(p), np.zeros_like(p)] for p in params]
    for step in range(1, EPOCHS + 1):
        err = (_softmax(x @ params[0] + params[1]) - onehot) / n
        grads = [x.T @ err + l2 * params[0], err.sum(axis=0)]
        for p, g, m in zip(params, grads, moments, strict=True):
            m[0] = 0.9 * m[0] + 0.1 * g
            m[1] = 0.999 * m[1] + 0.001 * g * g
            p -= (
                LEARNING_RATE
                * (m[0] / (1 - 0.9**step))
                / (np.sqrt(m[1] / (1 - 0.999**step)) + 1e-8)
            )
    return params[0], params[1]


def fit_linear(data: Data) -> local.LinearModel:
    vocab = vocabulary(data.rows)
    weights, bias = fit_softmax(to_matrix(data.rows, vocab), data.y)
    return local.LinearModel.from_json(_model_json(vocab, weights, bias))


def _model_json(vocab: list[str], weights: np.ndarray, bias: np.ndarray) -> dict:
    keep = [j for j in range(len(vocab)) if np.abs(weights[j]).max() >= 1e-3]
    return {
        "version": local.MODEL,
        "labels": [str(label) for label in LABELS],
        "bias": [round(float(b), 4) for b in bias],
        "features": [vocab[j] for j in keep],
        "weights": [[round(float(w), 3) for w in weights[j]] for j in keep],
    }


# ---------------------------------------------------------------- calibration


def isotonic_fit(scores: Sequence[float], hits: Sequence[float]) -> tuple[list[float], list[float]]:
    """Pool-adjacent-violators: a non-decreasing step fit of `hits` (0/1) on `scores`.

    Returns one point per step: (mean score, mean hit), shrunk by SHRINK_RECORDS towards the
    step's mean score (a step of 3 records says little; the model's own probability is the
    prior) and made monotone again.
    """
    order = np.argsort(np.asarray(scores), kind="stable")
    blocks: list[list[float]] = []  # [sum of scores, sum of hits, count]
    for i in order:
        blocks.append([float(scores[i]), float(hits[i]), 1.0])
        while len(blocks) > 1 and blocks[-2][1] / blocks[-2][2] >= blocks[-1][1] / blocks[-1][2]:
            s, h, c = blocks.pop()
            blocks[-1] = [blocks[-1][0] + s, blocks[-1][1] + h, blocks[-1][2] + c]
    xs = [s / c for s, _, c in blocks]
    ys = [(h + SHRINK_RECORDS * s / c) / (c + SHRINK_RECORDS) for s, h, c in blocks]
    return xs, list(np.maximum.accumulate(ys))


@dataclass(frozen=True)
class Scored:
    """Out-of-style answers: the model's top probability, whether it was right, its group."""

    raw: list[float]
    hits: list[float]
    groups: list[str]


def _score(model: local.LinearModel, data: Data) -> Scored:
    raw, hits, groups = [], [], []
    for i, row in enumerate(data.rows):
        if data.blank[i]:  # decide() answers OTHER at the raw probability: nothing to fit
            continue
        best, p = rank(model.probabilities(row))[0]
        raw.append(p)
        hits.append(float(best is LABELS[data.y[i]]))
        groups.append(local.calibration_group(data.signals[i], best))
    return Scored(raw, hits, groups)


def out_of_style(data: Data, extra: Data) -> Scored:
    """Each style scored by a model fitted on the others (plus `extra`, never scored)."""
    raw, hits, groups = [], [], []
    for style in dict.fromkeys(data.styles):
        held = [i for i, s in enumerate(data.styles) if s == style]
        rest = [i for i, s in enumerate(data.styles) if s != style]
        model = fit_linear(_concat(data.take(rest), extra))
        scored = _score(model, data.take(held))
        raw += scored.raw
        hits += scored.hits
        groups += scored.groups
    return Scored(raw, hits, groups)


def fit_calibration(scored: Scored) -> dict:
    """One isotonic fit per group with at least MIN_GROUP records, and "all" (pooled)."""
    out = {}
    for name in (*GROUPS, "all"):
        mask = [name == "all" or g == name for g in scored.groups]
        raw = [r for r, m in zip(scored.raw, mask, strict=True) if m]
        hits = [h for h, m in zip(scored.hits, mask, strict=True) if m]
        if len(raw) < MIN_GROUP:
            continue
        xs, ys = isotonic_fit(raw, hits)
        out[name] = {
            "records": len(raw),
            "accuracy": round(float(np.mean(hits)), 4),
            "x": [round(v, 4) for v in xs],
            "y": [round(float(v), 4) for v in ys],
        }
    return out


def calibrations_from(groups: dict) -> dict[str, local.Calibration]:
    return {name: local.Calibration.from_json(fit) for name, fit in groups.items()}


def _concat(a: Data, b: Data) -> Data:
    return Data(a.rows + b.rows, np.concatenate([a.y, b.y]), a.styles + b.styles,
                a.signals + b.signals, a.blank + b.blank)  # fmt: skip


# ---------------------------------------------------------------- the recipe


def fit(data: Data, extra: Data) -> dict:
    """Model and calibration from `data` (two or more styles) and `extra` (generator
    records, fitted on only): {"model", "calibration", "stats"}, as JSON documents."""
    scored = out_of_style(data, extra)
    calibration = {
        "method": "isotonic (PAV) per evidence group on out-of-style top probability: each "
        "style scored by a model fitted on the other styles",
        "styles": sorted(set(data.styles)),
        "groups": fit_calibration(scored),
    }
    whole = _concat(data, extra)
    vocab = vocabulary(whole.rows)
    weights, bias = fit_softmax(to_matrix(whole.rows, vocab), whole.y)
    stats = {
        "records": len(data),
        "generated": len(extra),
        "features": len(vocab),
        "out_of_style_accuracy": round(float(np.mean(scored.hits)), 4),
    }
    return {"model": _model_json(vocab, weights, bias), "calibration": calibration, "stats": stats}


def train(*, styles: Sequence[str] = labelled.STYLES, generated: int = GENERATED_COUNT) -> dict:
    """Fit on the shipped styled sets (+ `generated` generator records), writing nothing."""
    data = featurize(labelled.load_styles(styles))
    return fit(data, featurize(generated_examples(generated)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m enrichment.tooling.train_local",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--generated",
        type=int,
        default=GENERATED_COUNT,
        help=f"generator records added to the fit ({GENERATED_COUNT})",
    )
    args = parser.parse_args(argv)
    result = train(generated=args.generated)
    for path, key in ((local.MODEL_PATH, "model"), (local.CALIBRATION_PATH, "calibration")):
        path.write_text(json.dumps(result[key], separators=(",", ":")) + "\n", encoding="utf-8")
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    print(json.dumps(result["stats"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
