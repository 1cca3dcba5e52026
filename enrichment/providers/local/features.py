"""One record's evidence and model features, by family. All pure.

Families (each can be left out, for the ablation in `enrichment eval --drop`):
- `events`: telling event types, words of unknown types, carrier codes, phrases in event
  details, delivery attempts, a healthy flow;
- `timing`: SLA breaches at pick and pack, waits for the carrier, scan gaps, slow transit,
  missing allocation, how far the order got;
- `payload`: the shipping address's problems and the payment status;
- `reason`: the reason code;
- `text`: the ops notes (lexicon hits, words, word pairs, letter trigrams).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from enrichment.core.provider import RecordContext
from enrichment.core.taxonomy import Label
from enrichment.providers.local import evidence as E
from enrichment.providers.local.evidence import Signal
from enrichment.providers.local.rules import MILESTONES, REASON_HINTS, W_HEALTHY, W_REASON
from enrichment.providers.local.text import (
    WORD,
    Note,
    keyword_weights,
    read_note,
    text_features,
)

L = Label
FAMILIES = ("events", "timing", "payload", "reason", "text")
KIND_FAMILY = {
    "event": "events", "event detail": "events", "code": "events", "flow": "events",
    "timing": "timing", "payload": "payload", "reason": "reason", "note": "text",
}  # fmt: skip
FEATURE_FAMILY = {"ev": "events", "tm": "timing", "pl": "payload", "rc": "reason", "tx": "text"}
EVIDENCE_KINDS = frozenset({"event", "event detail", "code", "timing", "payload", "flow"})
ALL = frozenset(FAMILIES)

__all__ = ["FAMILIES", "WORD", "Record", "Signal", "calibration_group", "collect", "read"]


@dataclass(frozen=True)
class Record:
    """What the features are made from: typed events, their timing, the note as read."""

    ctx: RecordContext
    events: list[E.Event]
    timing: E.Timing
    note: Note

    @property
    def order(self) -> dict:
        return self.ctx.order if isinstance(self.ctx.order, dict) else {}


def read(ctx: RecordContext) -> Record:
    events = E.read_events(ctx.events)
    return Record(ctx, events, E.timing(events), read_note(ctx.notes))


def reason_code(raw: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", raw.upper()).strip("_")


def reason_signals(raw: str) -> list[Signal]:
    labels = REASON_HINTS.get(reason_code(raw), ())
    text = f"reason code {raw}"
    return [Signal(label, W_REASON / len(labels), "reason", text) for label in labels]


def note_signals(note: Note) -> list[Signal]:
    return [
        Signal(label, weight, "note", f"note mentions {seen!r}")
        for label, (weight, seen) in keyword_weights(note.text).items()
    ]


def _healthy(signals: list[Signal], events: list[E.Event]) -> list[Signal]:
    """A normal flow with no observed problem is evidence for OTHER (a customer request)."""
    if not events or any(s.kind in EVIDENCE_KINDS for s in signals):
        return []
    if any(e.type not in MILESTONES for e in events):
        return []
    return [Signal(L.OTHER, W_HEALTHY, "flow", "order flow shows no operational problem")]


def collect(ctx: RecordContext | Record, families: frozenset[str] = ALL) -> list[Signal]:
    """All evidence in the record from the kept families, strongest first (stable order)."""
    rec = ctx if isinstance(ctx, Record) else read(ctx)
    signals = [
        *E.event_signals(rec.events),
        *E.timing_signals(rec.timing),
        *E.payload_signals(rec.order),
        *note_signals(rec.note),
        *reason_signals(rec.ctx.reason_code),
    ]
    signals += _healthy(signals, rec.events)
    kept = [s for s in signals if KIND_FAMILY[s.kind] in families]
    return sorted(kept, key=lambda s: -s.weight)


# ---------------------------------------------------------------- scoring


def score(signals: Iterable[Signal]) -> dict[Label, float]:
    totals = dict.fromkeys(Label, 0.0)
    for s in signals:
        totals[s.label] += s.weight
    return totals


def rank(totals: dict[Label, float]) -> list[tuple[Label, float]]:
    """Labels by score, ties broken by taxonomy order so the result is stable."""
    order = {label: i for i, label in enumerate(Label)}
    return sorted(totals.items(), key=lambda kv: (-kv[1], order[kv[0]]))


# The structure is in conflict with the answer when another label has at least this share
# of the answer's structural evidence.
CONFLICT_RATIO = 0.5
# Rule totals are divided by this so an event + note + reason (~6) reads ~1.
RULE_SCALE = 6.0
GROUPS = ("evidence", "conflict", "text")


def calibration_group(signals: list[Signal], best: Label) -> str:
    """How the answer `best` stands against the structural evidence (events, timing,
    payload): "evidence" when that evidence backs it alone (for OTHER: a flow with no
    problem in it), "text" when the structure shows no problem (the answer rests on words
    and the reason code), "conflict" otherwise. A text-only answer on a writing style the
    model never saw is much less reliable than an evidence-backed one, and the model's
    probability alone does not show it, so each group has its own calibration."""
    problems = score(s for s in signals if s.kind in EVIDENCE_KINDS and s.kind != "flow")
    if max(problems.values()) == 0:
        healthy = any(s.kind == "flow" for s in signals)
        return "evidence" if healthy and best is L.OTHER else "text"
    mine = problems[best]
    rivals = max(v for label, v in problems.items() if label is not best)
    return "evidence" if mine > 0 and rivals < CONFLICT_RATIO * mine else "conflict"


def record_features(
    ctx: RecordContext | Record, signals: list[Signal], families: frozenset[str] = ALL
) -> dict[str, float]:
    """Sparse features of one record: rule evidence and totals, then each family's own."""
    rec = ctx if isinstance(ctx, Record) else read(ctx)
    feats: dict[str, float] = {f"s:{s.kind}:{s.label}": 1.0 for s in signals}
    totals = score(signals)
    feats.update({f"rule:{label}": t / RULE_SCALE for label, t in totals.items() if t})
    best, best_score = rank(totals)[0]
    feats["rule_top:" + (str(best) if best_score > 0 else "none")] = 1.0
    feats.update(E.event_features(rec.events))
    feats.update(E.timing_features(rec.timing))
    feats.update(E.payload_features(rec.order, rec.events))
    feats[f"rc:{reason_code(rec.ctx.reason_code)}"] = 1.0
    feats.update(text_features(rec.note.text, "tx:"))
    return {k: v for k, v in feats.items() if _kept(k, families)}


def _kept(name: str, families: frozenset[str]) -> bool:
    """Whether a feature's family is kept; the rule features (`s:`, `rule:`, `rule_top:`)
    always are: their signals were filtered already."""
    family = FEATURE_FAMILY.get(name.split(":", 1)[0])
    return family is None or family in families
