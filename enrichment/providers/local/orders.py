"""The local provider's order analysis: the problems a watched order shows, from the evidence
the exception stages already read (late waits, telling events and carrier codes, payment and
address), each with a label, a fixed confidence per kind of evidence and its texts. Pure.

The waits are the classifier's own (`evidence.timing_signals`), read as of the check instead
of the last event: an exception raised here is opened at that moment (its context ends with an
`exception_opened` then: `order_raise.context_events`), so the classifier reading it finds the
same late wait, with the same label, that raised it. The watch's timers (`order_watch`) only
decide when to look."""

from __future__ import annotations

from datetime import datetime

from enrichment.core.provider import RecordContext
from enrichment.core.schemas import OrderAnalysis, OrderProblem
from enrichment.core.taxonomy import Label
from enrichment.providers.local.evidence import (
    event_signals,
    payload_signals,
    read_events,
    timing,
    timing_signals,
)

# How sure each kind of evidence makes the analysis. A wait past its deadline is a fact; an
# unpaid status alone is often just early (below the default threshold of 0.7 on purpose).
CONFIDENCE = {"timing": 0.9, "event": 0.85, "code": 0.8, "payload": 0.8, "payment": 0.6}
MAX_EVIDENCE = 5


def _found(ctx: RecordContext, now: datetime) -> list[tuple[Label, float, str]]:
    events = read_events(ctx.events)
    found = [(s.label, CONFIDENCE["timing"], s.text) for s in timing_signals(timing(events, now))]
    for signal in event_signals(events):
        if signal.kind in ("event", "code"):
            found.append((signal.label, CONFIDENCE[signal.kind], signal.text))
    for signal in payload_signals(ctx.order):
        kind = "payment" if signal.label is Label.PAYMENT_FAILED else "payload"
        found.append((signal.label, CONFIDENCE[kind], signal.text))
    return found


def analyze_order(ctx: RecordContext, now: datetime) -> OrderAnalysis:
    """One problem per label: its strongest evidence's confidence, its evidence texts."""
    by_label: dict[Label, tuple[float, list[str]]] = {}
    for label, confidence, text in _found(ctx, now):
        best, texts = by_label.get(label, (0.0, []))
        by_label[label] = (max(best, confidence), [*texts, text[:500]])
    problems = [
        OrderProblem(label=label, confidence=conf, evidence=texts[:MAX_EVIDENCE])
        for label, (conf, texts) in sorted(by_label.items(), key=lambda kv: -kv[1][0])
    ][:10]
    summary = (
        f"{len(problems)} problem(s); strongest: {problems[0].label} ({problems[0].confidence})"
        if problems
        else "No problem found in the order's events and payload."
    )
    return OrderAnalysis(problems=problems, summary=summary)
