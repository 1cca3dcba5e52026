"""Free text (ops notes, event details): folding, instructions aimed at the AI, keyword
evidence and the model's word features. All pure.

A note that tries to instruct the AI ("ignore previous instructions", "label=...", a tool
call, a closing tag) is untrusted as a whole: none of its words count, so it cannot move the
label; the label then rests on the events, the payload and the reason code.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from enrichment.core.taxonomy import Action, Label
from enrichment.providers.local.lexicon import NOTE_PATTERNS, fuzzy_labels

L = Label
W_NOTE_FIRST, W_NOTE_MORE = 1.5, 0.75

# Zero-width and bidi controls: invisible, and a way to split a trigger word ("I\u200bgnore").
_INVISIBLE = re.compile(r"[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
# An address's local part is at most 254 characters to this pattern: `\S+@` would rescan a
# long run without '@' from each of its characters (quadratic: 0.8 s on 20,000 of them).
_PII = re.compile(r"\S{1,254}@\S+|https?://\S+|www\.\S+|\+?\d[\d ()./-]{6,}\d")
WORD = re.compile(r"[^\W\d_]{2,}")  # letters only: ids, sizes and hours say nothing
# Taxonomy and action names: only someone steering the AI writes them in a note.
_NAMES = re.compile(
    r"\b(?:" + "|".join(sorted({*map(str, Label), *map(str, Action)}, key=len, reverse=True))
    + r"|ISSUE_REFUND|CUSTOMS_HOLD)\b",
    re.IGNORECASE,
)  # fmt: skip
# On folded text. Each is something an ops note, a carrier feed or a customer has no reason
# to write (so "disregard my previous email" or "print a new label" do not count).
_STEER = r"[a-z]+_[a-z_]+"  # an UPPER_SNAKE name, folded: a label or action someone wants
INJECTION = re.compile(
    r"\b(?:ignor\w*|disregard\w*|forget)\b.{0,30}\b(?:instru[ck]\w*|anweisung\w*|rules?|prompt|taxonomy|"
    r"everything (?:above|before)|all (?:prior|previous|above))\b"
    r"|\b(?:new|updated) instructions\b|\bsystem prompt\b|\byou are now\b"
    r"|\badmin (?:mode|override)\b|\bjailbreak\b|\bas an ai\b|<!--"
    r"|(?:^|\n)\s*(?:assistant|human)\s*:|\bsystem\s*:\s*(?:you|ignore|new|override)\b"
    r"|\b(?:confidence|automatable|rationale)\b\s*[\"']?\s*[:=]|\bactions?\s*[:=]\s*\["
    r"|\blabel\s*[\"']?\s*[:=]\s*[\"']?" + _STEER + r"|[\"'](?:label|confidence|actions?)[\"']"
    r"|</?(?:customer_data|record|analysis|classification|allowed_actions|instructions?|"
    r"system|prompt|tool\w*)\b[^>]*>|&lt;/|\\u003c|tool_use|```"
    r"|\b(?:set|output)\b.{0,20}\bconfidence\b|\bclassify (?:this|it) as\b"
    r"|\b(?:reveal|print|show)\b.{0,20}\b(?:system prompt|your prompt|instructions)\b"
    r"|\btranslate (?:this |the following )?(?:to|into)\b"
    r"|\b(?:note|message|instructions?) (?:to|for) (?:the )?(?:ai|model|bot|assistant|llm)\b"
    r"|\b(?:dear|hey|attention) (?:ai|assistant|model|bot|llm|chatgpt|claude)\b"
    r"|\b(?:ai|llm|chatgpt|claude|classifier)\b.{0,20}\b(?:must|should|shall)\b",
    re.DOTALL,
)
# Words that, just before a hit, say the opposite ("no damage", "kein Schaden").
_NEGATION = re.compile(r"\b(?:no|not|without|nothing|never|kein\w*|nicht|sans|sin|senza|bez)\s+$")
NEGATABLE = frozenset({L.DAMAGED_PACKAGE, L.DELIVERY_DELAY, L.SYSTEM_ERROR})


def fold(text: str) -> str:
    """Lower case, accents removed (NFKD), invisible characters dropped: how people type
    the same word on different keyboards, and how a trigger word hides."""
    text = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@dataclass(frozen=True)
class Note:
    """A note ready for matching: folded `text`; an untrusted note (`injected`) reads as
    no note at all (`text` "", `raw_empty`), so it can change nothing."""

    text: str
    injected: bool
    raw_empty: bool


def read_note(raw: str | None) -> Note:
    """The note folded, personal data and taxonomy names removed; empty when it carries
    instructions for the AI."""
    folded = fold(raw or "")
    injected = bool(INJECTION.search(folded) or _NAMES.search(folded))
    cleaned = "" if injected else _PII.sub(" ", _NAMES.sub(" ", folded))
    return Note(text=cleaned, injected=injected, raw_empty=injected or not WORD.search(folded))


def _negated(text: str, start: int) -> bool:
    return bool(_NEGATION.search(text[max(0, start - 12) : start]))


def keyword_hits(folded: str) -> dict[Label, list[str]]:
    """Per label, the phrases of the lexicon found in `folded` text (exact, then one-typo
    single words), first two only; negated hits ("no damage") are left out."""
    hits: dict[Label, list[str]] = {}
    for label, patterns in NOTE_PATTERNS.items():
        for pattern in patterns:
            m = pattern.search(folded)
            if m and not (label in NEGATABLE and _negated(folded, m.start())):
                hits.setdefault(label, []).append(m.group(0))
    for word in set(WORD.findall(folded)):
        for label in fuzzy_labels(word):
            found = hits.setdefault(label, [])
            if word not in found:
                found.append(word)
    return {label: found[:2] for label, found in hits.items() if found}


def keyword_weights(folded: str) -> dict[Label, tuple[float, str]]:
    """Per label: evidence weight (first phrase counts most, cap of two) and what was seen."""
    return {
        label: (W_NOTE_FIRST + W_NOTE_MORE * (len(found) - 1), ", ".join(found))
        for label, found in keyword_hits(folded).items()
    }


def text_features(folded: str, prefix: str) -> dict[str, float]:
    """Words, word pairs and letter trigrams of folded text (trigrams survive typos)."""
    words = WORD.findall(folded)
    feats = {f"{prefix}w:{w}": 1.0 for w in words}
    feats.update({f"{prefix}b:{a}_{b}": 1.0 for a, b in zip(words, words[1:], strict=False)})
    for w in words:
        padded = f"<{w}>"
        feats.update({f"{prefix}c:{padded[i : i + 3]}": 1.0 for i in range(len(padded) - 2)})
    return feats
