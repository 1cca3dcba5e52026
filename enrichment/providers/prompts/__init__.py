"""Versioned prompt files, and how one record is rendered into a stage's user message.

Files: `system_<version>.txt` (stable, shared by every stage, with a `{taxonomy}` slot filled
from enrichment.core.taxonomy) and `<stage>_<version>.txt` (the stage instruction). A change of
wording is a new version, so every attempt row says which words produced its answer. v2 (the
default) carries the label definitions, the evidence that separates confusable labels, when to
choose each action, and worked examples; v1 is the short original, still loadable. The tools
the model reads before the system prompt are built in `tools.py`.

Everything taken from the record is untrusted: it goes inside <customer_data> as JSON whose
`<` and `>` are escaped, so no note can close the tag and pose as instructions. Emails and
phone numbers are redacted before the text leaves the process.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from enrichment.core.provider import RecordContext
from enrichment.core.settings import ConfigurationError
from enrichment.core.stages import Stage
from enrichment.core.taxonomy import ALLOWED_ACTIONS, Label

PROMPT_DIR = Path(__file__).parent
MAX_STRING_CHARS = 2000  # per string value: a pasted e-mail thread must not blow the context
MAX_LIST_ITEMS = 50  # per list: the most recent events matter, not a year of scans

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# A phone candidate: optional + or (, then digits with spaces, dots, dashes or brackets.
_PHONE = re.compile(r"(?<![\w+(])[+(]?\d[\d ().-]{6,20}\d(?!\w)")
_NOT_PHONE = re.compile(r"\d+(?:\.\d+)?|\d{4}-\d{2}-\d{2}.*")  # bare ids, amounts, dates
_PII_KEYS = {"email": "[EMAIL]", "phone": "[PHONE]"}


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
            s.call: (PROMPT_DIR / f"{s.call}_{version}.txt").read_text(encoding="utf-8").strip()
            for s in Stage
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
    parts = [
        prompts.instructions[stage],
        _tag("record", {"reason_code": ctx.reason_code, "severity": ctx.severity}),
        _tag("customer_data", {"notes": ctx.notes, "order": ctx.order, "events": ctx.events}),
    ]
    if ctx.analysis is not None and stage != "analyze":
        parts.append(_tag("analysis", ctx.analysis.model_dump(mode="json")))
    if ctx.classification is not None and stage == "resolve":
        parts.append(_tag("classification", ctx.classification.model_dump(mode="json")))
        allowed = sorted(ALLOWED_ACTIONS[ctx.classification.label])
        parts.append(_tag("allowed_actions", allowed))
    return redact("\n\n".join(parts))


def _tag(name: str, value: Any) -> str:
    # Escaped angle brackets keep the JSON valid and make a forged closing tag impossible.
    body = json.dumps(_clean(value), ensure_ascii=False, indent=1, sort_keys=True)
    body = body.replace("<", "\\u003c").replace(">", "\\u003e")
    return f"<{name}>\n{body}\n</{name}>"


def _clean(value: Any, key: str = "") -> Any:
    """Drop PII by key name, truncate long strings and lists, redact free text."""
    for marker, placeholder in _PII_KEYS.items():
        if marker in key.lower() and value not in (None, ""):
            return placeholder
    if isinstance(value, dict):
        return {str(k): _clean(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value[-MAX_LIST_ITEMS:]]
    if isinstance(value, str):
        return redact(value[:MAX_STRING_CHARS])
    return value


def redact(text: str) -> str:
    """`text` with e-mail addresses as [EMAIL] and phone numbers as [PHONE].

    A phone number is 9 to 15 digits written with a leading + or with separators; a bare run
    of digits is left alone because order ids and amounts look exactly like that.
    """
    return _PHONE.sub(_phone_or_keep, _EMAIL.sub("[EMAIL]", text))


def _phone_or_keep(match: re.Match[str]) -> str:
    candidate = match.group()
    digits = sum(ch.isdigit() for ch in candidate)
    if not 9 <= digits <= 15 or _NOT_PHONE.fullmatch(candidate):
        return candidate
    return "[PHONE]"
