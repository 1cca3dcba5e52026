"""Fit the local provider's model and calibration: `python -m enrichment.tooling.train_local`.

1. Features for every record of the *training* part of the shipped labelled set (the
   held-out part is never read), plus generator records (a fixed seed that no test uses),
   which teach the event and reason-code features the hand-written notes rarely vary.
2. Out-of-fold predictions (5 folds over the labelled training part): each fold is scored by
   a model that never saw it, so the calibration sees honest, not memorised, probabilities.
3. An isotonic fit of "top label was right" against the top probability on those
   out-of-fold predictions, shrunk towards the mean where a step has few records.
4. The final model on all of the training data.
Writes enrichment/providers/local/local_model.json and local_calibration.json. Deterministic.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from enrichment.core.taxonomy import Label
from enrichment.providers import local
from enrichment.tooling import generate, labelled

LABELS = tuple(Label)
GENERATED_SEED = 1001  # not 7/2/4/9: the seeds the tests and the demo use
GENERATED_COUNT = 400
FOLDS = 5
MIN_COUNT = 2  # a feature seen in one record only is noise, not signal
L2 = 0.002  # per-record L2 penalty on the weights (not the bias)
EPOCHS, LEARNING_RATE = 300, 0.05
SHRINK_RECORDS = 1.0  # a pseudo-record pulling each isotonic step towards the mean


def featurize(contexts: Sequence[local.RecordContext]) -> list[dict[str, float]]:
    return [local.record_features(ctx, local.collect(ctx)) for ctx in contexts]


def vocabulary(rows: Sequence[dict[str, float]], min_count: int = MIN_COUNT) -> list[str]:
    """Features present in at least `min_count` rows, sorted (a stable column order)."""
    counts = Counter(name for row in rows for name in row)
    return sorted(name for name, n in counts.items() if n >= min_count)


def to_matrix(rows: Sequence[dict[str, float]], vocab: Sequence[str]) -> np.ndarray:
    column = {name: j for j, name in enumerate(vocab)}
    x = np.zeros((len(rows), len(vocab)))
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
    onehot = np.eye(k)[y]
    params = [np.zeros((x.shape[1], k)), np.zeros(k)]
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


def isotonic_fit(scores: Sequence[float], hits: Sequence[float]) -> tuple[list[float], list[float]]:
    """Pool-adjacent-violators: a non-decreasing step fit of `hits` (0/1) on `scores`.

    Returns one point per step: (mean score, mean hit), shrunk by SHRINK_RECORDS towards the
    overall hit rate (a step of 3 records says little) and made monotone again.
    """
    order = np.argsort(np.asarray(scores), kind="stable")
    blocks: list[list[float]] = []  # [sum of scores, sum of hits, count]
    for i in order:
        blocks.append([float(scores[i]), float(hits[i]), 1.0])
        while len(blocks) > 1 and blocks[-2][1] / blocks[-2][2] >= blocks[-1][1] / blocks[-1][2]:
            s, h, c = blocks.pop()
            blocks[-1] = [blocks[-1][0] + s, blocks[-1][1] + h, blocks[-1][2] + c]
    prior = float(np.mean(hits))
    xs = [s / c for s, _, c in blocks]
    ys = [(h + SHRINK_RECORDS * prior) / (c + SHRINK_RECORDS) for _, h, c in blocks]
    return xs, list(np.maximum.accumulate(ys))


def _predict(weights: np.ndarray, bias: np.ndarray, x: np.ndarray) -> np.ndarray:
    return _softmax(x @ weights + bias)


def out_of_fold(x: np.ndarray, y: np.ndarray, folds: np.ndarray, extra: tuple) -> np.ndarray:
    """Probabilities for each labelled row from a model fitted without its fold (+ extra)."""
    probs = np.zeros((len(y), len(LABELS)))
    for fold in range(FOLDS):
        held = folds == fold
        fit_x = np.vstack([x[~held], extra[0]])
        fit_y = np.concatenate([y[~held], extra[1]])
        probs[held] = _predict(*fit_softmax(fit_x, fit_y), x[held])
    return probs


def _generated(count: int) -> tuple[list[local.RecordContext], list[int]]:
    cases = list(generate.generate_cases("train", count, GENERATED_SEED))
    contexts = [labelled.to_context(c.line, record_id=i) for i, c in enumerate(cases, start=1)]
    return contexts, [LABELS.index(c.label) for c in cases]


def _fit_groups(raw: np.ndarray, hits: np.ndarray, groups: list[str]) -> dict[str, dict]:
    """One isotonic fit per calibration group ("clear", "conflict")."""
    out = {}
    for name in ("clear", "conflict"):
        mask = np.array([g == name for g in groups])
        xs, ys = isotonic_fit(raw[mask], hits[mask])
        out[name] = {
            "records": int(mask.sum()),
            "accuracy": round(float(hits[mask].mean()), 4),
            "x": [round(v, 4) for v in xs],
            "y": [round(float(v), 4) for v in ys],
        }
    return out


def _model_json(vocab: list[str], weights: np.ndarray, bias: np.ndarray) -> dict:
    keep = [j for j in range(len(vocab)) if np.abs(weights[j]).max() >= 1e-3]
    return {
        "version": local.MODEL,
        "labels": [str(label) for label in LABELS],
        "bias": [round(float(b), 4) for b in bias],
        "features": [vocab[j] for j in keep],
        "weights": [[round(float(w), 4) for w in weights[j]] for j in keep],
    }


def train(*, data: Path = labelled.DEFAULT_PATH, generated: int = GENERATED_COUNT) -> dict:
    """Fit on the training part of `data` (+ `generated` generator records); returns both
    JSON documents and the out-of-fold figures, without writing anything."""
    train_part, _ = labelled.split(labelled.load(data))
    rows = featurize([e.ctx for e in train_part])
    gen_contexts, gen_labels = _generated(generated)
    gen_rows, gen_y = featurize(gen_contexts), np.array(gen_labels, dtype=int)
    vocab = vocabulary(rows + gen_rows)
    x, gen_x = to_matrix(rows, vocab), to_matrix(gen_rows, vocab)
    y = np.array([LABELS.index(e.label) for e in train_part])
    folds = np.array([int(labelled.id_fraction(e.external_id, "fold") * FOLDS) for e in train_part])
    oof = out_of_fold(x, y, folds, (gen_x, gen_y))
    raw, hits = oof.max(axis=1), (oof.argmax(axis=1) == y).astype(float)
    groups = [local.calibration_group(local.collect(e.ctx)) for e in train_part]
    calibration = {
        "method": "isotonic (PAV) on 5-fold out-of-fold top probability, per rules-conflict group",
        "groups": _fit_groups(raw, hits, groups),
    }
    weights, bias = fit_softmax(np.vstack([x, gen_x]), np.concatenate([y, gen_y]))
    stats = {
        "records": len(y),
        "generated": generated,
        "features": len(vocab),
        "oof_accuracy": float(hits.mean()),
    }
    return {"model": _model_json(vocab, weights, bias), "calibration": calibration, "stats": stats}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m enrichment.tooling.train_local",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", type=Path, default=labelled.DEFAULT_PATH)
    parser.add_argument(
        "--generated",
        type=int,
        default=GENERATED_COUNT,
        help=f"generator records added to the fit ({GENERATED_COUNT})",
    )
    args = parser.parse_args(argv)
    result = train(data=args.data, generated=args.generated)
    for path, key in ((local.MODEL_PATH, "model"), (local.CALIBRATION_PATH, "calibration")):
        path.write_text(json.dumps(result[key], separators=(",", ":")) + "\n", encoding="utf-8")
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    print(json.dumps(result["stats"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
