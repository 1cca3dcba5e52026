"""The demo's "escalations by reason" section (tooling/demo.py): the batch's escalated
records grouped by their reason without its per-record parts, and one line on what the
reasons present mean."""

from __future__ import annotations

import re
from collections import Counter

from sqlalchemy import select

from enrichment.core.models import ExceptionRecord, Tenant

# Escalation reasons carry ids and counters that differ per record: these go, so alike
# reasons group together ("... record=2 stage=classify attempt=5").
_VOLATILE = re.compile(r"\s*\b(?:record|attempt|id|task_id|request_id)=\S+")
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_LOW_CONFIDENCE = re.compile(r"^confidence [0-9.]+ <")


def normalise_reason(reason: str | None) -> str:
    """An escalation reason without its per-record parts, so alike reasons count together."""
    text = _VOLATILE.sub("", reason or "(no reason recorded)")
    text = _LOW_CONFIDENCE.sub("confidence stayed below", _UUID.sub("<id>", text))
    return " ".join(text.split())


def escalation_reasons(factory, batch: str) -> Counter[str]:
    """The batch's escalated records counted by normalised reason; a fault that ended a run
    of low-confidence rechecks is told apart from one that ended a run of failures."""
    R = ExceptionRecord
    query = (
        select(R.escalation_reason, R.ai_confidence, Tenant.confidence_threshold)
        .join(Tenant, Tenant.id == R.tenant_id)
        .where(R.external_id.like(f"{batch}%"), R.escalated_at.is_not(None))
    )
    counts: Counter[str] = Counter()
    with factory() as s:
        for reason, confidence, threshold in s.execute(query):
            key = normalise_reason(reason)
            unsure = confidence is not None and confidence < threshold
            if unsure and not key.startswith("confidence"):
                key += AFTER_RECHECKS
            counts[key] += 1
    return counts


def print_escalations(factory, batch: str) -> None:
    """The summary's "escalations by reason" section, and one line on what it means."""
    counts = escalation_reasons(factory, batch)
    if not counts:
        print("escalations by reason: none")
        return
    print(f"escalations by reason ({counts.total()}):")
    for reason, n in counts.most_common():
        print(f"{n:>6}  {reason}")
    print(escalation_meaning(counts))


def escalation_meaning(counts: Counter[str]) -> str:
    """One line saying what the reasons present mean; each kind is named only if present."""
    kinds = Counter(_kind(reason) for reason in counts.elements())
    parts = [f"{name} ({kinds[k]}): {text}" for k, (name, text) in _MEANINGS.items() if kinds[k]]
    return "what this means: " + "; ".join(parts) + "; escalated records wait for a person"


def _kind(reason: str) -> str:
    if "injected fault" in reason:
        return "fault_unsure" if reason.endswith(AFTER_RECHECKS) else "fault"
    return "unsure" if reason.startswith("confidence stayed below") else "other"


AFTER_RECHECKS = ", after low-confidence rechecks"
_FAULTS = "injected AI faults (the demo's ENRICHMENT_LOCAL_FAULT_RATE)"
_MEANINGS = {
    "unsure": ("low confidence", "the label stayed below the threshold on every recheck"),
    "fault_unsure": (
        "low confidence, then a fault",
        f"rechecked as ambiguous until one of the {_FAULTS} hit the last allowed attempt",
    ),
    "fault": ("faults", f"{_FAULTS} failed every allowed attempt"),
    "other": ("other errors", "a permanent error, or retries used up on it"),
}
