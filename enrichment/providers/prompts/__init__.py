"""Versioned prompt files, and how one record is rendered into a stage's user message.

Files: `system_<version>.txt` (stable, shared by every stage, with a `{taxonomy}` slot filled
from enrichment.core.taxonomy) and `<stage>_<version>.txt` (the stage instruction). A change of
wording is a new version, so every attempt row says which words produced its answer. v2 (the
default) carries the label definitions, the evidence that separates confusable labels, when to
choose each action, and worked examples; v1 is the short original, still loadable. The tools
the model reads before the system prompt are built in `tools.py`.

Everything taken from the record is untrusted: it goes inside <customer_data> as JSON whose
`<` and `>` are escaped, so no note can close the tag and pose as instructions. Each string,
key or value, is redacted on its own (e-mails, IBANs, card numbers, phones: redaction.py, in
linear time) and then cut, never cut first. Every part is bounded whatever the record holds
(issue 22): keys and strings are cut, lists keep their last items, and each tag renders at
most MAX_NODES values, MAX_DEPTH deep and MAX_TAG_CHARS characters, reading no more of the
record than that. A record over the ingestion limits never gets here from a stage or a
Message Batch submit (core/record_limits.py); these bounds hold for the rest (tooling).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import Any

from enrichment.core.provider import RecordContext
from enrichment.core.settings import ConfigurationError
from enrichment.core.stages import Stage
from enrichment.core.taxonomy import ALLOWED_ACTIONS, Label
from enrichment.providers.prompts.redaction import redact, redact_prefix

__all__ = ["PromptSet", "load", "redact", "render_user", "taxonomy_text"]

PROMPT_DIR = Path(__file__).parent
# An instruction file per stage call, and one for a watched order's analysis (core/order_watch).
ORDER_CALL = "analyze_order"
CALLS = (*(s.call for s in Stage), ORDER_CALL)
MAX_STRING_CHARS = 2000  # per string value: a pasted e-mail thread must not blow the context
MAX_KEY_CHARS = 100  # per key
MAX_LIST_ITEMS = 50  # per list: the most recent events matter, not a year of scans
MAX_DICT_KEYS = 200  # per object
MAX_DEPTH = 12  # deeper objects and lists are shown as CUT
MAX_NODES = 3000  # values rendered per tag, at every depth
MAX_TAG_CHARS = 120_000  # characters of strings and keys rendered per tag (~30k tokens)
CUT = "[cut]"

_PII_KEYS = {"email": "[EMAIL]", "phone": "[PHONE]"}


class _Budget:
    """What one tag may still render: values and characters."""

    def __init__(self) -> None:
        self.nodes = MAX_NODES
        self.chars = MAX_TAG_CHARS

    def text(self, raw: str, limit: int) -> str:
        """`raw` redacted, then cut to `limit` and to what is left of the budget."""
        limit = min(limit, self.chars)
        if limit <= 0:
            return ""  # spent: nothing more is read
        out = redact_prefix(raw, limit)
        self.chars -= len(out)
        return out


@dataclass(frozen=True)
class PromptSet:
    """One version's texts: the rendered system prompt and the per-stage instructions."""

    version: str
    system: str
    instructions: dict[str, str]


@lru_cache(maxsize=4)
def load(version: str = "v1") -> PromptSet:
    """The prompt files of `version`; a missing file fails at start-up with its path."""
    try:
        system = (PROMPT_DIR / f"system_{version}.txt").read_text(encoding="utf-8")
        instructions = {
            call: (PROMPT_DIR / f"{call}_{version}.txt").read_text(encoding="utf-8").strip()
            for call in CALLS
        }
    except FileNotFoundError as exc:
        raise ConfigurationError(f"prompt version {version!r}: {exc.filename} is missing") from None
    return PromptSet(version, system.replace("{taxonomy}", taxonomy_text()).strip(), instructions)


def taxonomy_text() -> str:
    """One line per label with its allowed actions, straight from enrichment.core.taxonomy."""
    lines = []
    for label in Label:
        actions = ", ".join(sorted(ALLOWED_ACTIONS[label])) or "(none: needs a person)"
        lines.append(f"- {label}: {actions}")
    return "\n".join(lines)


def render_user(prompts: PromptSet, stage: str, ctx: RecordContext) -> str:
    """The user message for `stage`: instruction, record facts, delimited customer data."""
    facts = {"reason_code": ctx.reason_code, "severity": ctx.severity}
    if stage == ORDER_CALL:  # an order, read as of the check's time
        facts = {"record_type": "order", "as_of": ctx.as_of.isoformat() if ctx.as_of else None}
    parts = [
        prompts.instructions[stage],
        _tag("record", facts),
        _tag("customer_data", {"notes": ctx.notes, "order": ctx.order, "events": ctx.events}),
    ]
    if ctx.analysis is not None and stage != "analyze":
        parts.append(_tag("analysis", ctx.analysis.model_dump(mode="json")))
    if ctx.classification is not None and stage == "resolve":
        parts.append(_tag("classification", ctx.classification.model_dump(mode="json")))
        allowed = sorted(ALLOWED_ACTIONS[ctx.classification.label])
        parts.append(_tag("allowed_actions", allowed))
    return "\n\n".join(parts)


def _tag(name: str, value: Any) -> str:
    # Escaped angle brackets keep the JSON valid and make a forged closing tag impossible.
    body = json.dumps(_clean(value, _Budget()), ensure_ascii=False, indent=1, sort_keys=True)
    body = body.replace("<", "\\u003c").replace(">", "\\u003e")
    return f"<{name}>\n{body}\n</{name}>"


def _clean(value: Any, budget: _Budget, key: str = "", depth: int = 0) -> Any:
    """Drop PII by key name, redact and cut strings, keep the last list items, within budget."""
    budget.nodes -= 1
    if budget.nodes < 0:
        return CUT
    for marker, placeholder in _PII_KEYS.items():
        if marker in key.lower() and value not in (None, ""):
            return placeholder
    if isinstance(value, dict | list) and depth >= MAX_DEPTH:
        return CUT
    if isinstance(value, dict):
        return _clean_dict(value, budget, depth)
    if isinstance(value, list):
        return [_clean(v, budget, depth=depth + 1) for v in value[-MAX_LIST_ITEMS:]]
    if isinstance(value, str):
        return budget.text(value, MAX_STRING_CHARS)
    return value


def _clean_dict(value: dict[Any, Any], budget: _Budget, depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for raw_key, child in islice(value.items(), MAX_DICT_KEYS):
        if budget.nodes <= 0 or budget.chars <= 0:
            break
        key = str(raw_key)
        shown = budget.text(key, MAX_KEY_CHARS)
        out.setdefault(shown, _clean(child, budget, key, depth + 1))
    return out
