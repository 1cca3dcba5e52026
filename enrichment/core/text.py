"""Text for people, shared by every page, printer and notice: untrusted text made printable,
plural forms, durations and numbers."""

from __future__ import annotations

import re
import unicodedata

# CSI (colours, cursor moves), OSC (window title, hyperlinks; ended by BEL or ST or nothing)
# and the two-byte escapes. What is left of any other control character is dropped below.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]?|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-_])")
# Line and paragraph separators would break a line like a newline does.
_SPACES = {"\t", "\n", "\r", "\u2028", "\u2029", "\x0b", "\x0c"}
_DROPPED = {"Cc", "Cf", "Cs", "Co", "Cn"}  # controls, bidi overrides, surrogates, unassigned
FIELD_MAX = 200


def printable(text: object, limit: int = FIELD_MAX) -> str:
    """Untrusted text (customer notes, model output, receiver notes) as one printable line of
    at most `limit` characters, safe for a terminal: escapes and controls go ('' for None)."""
    if text is None:
        return ""
    raw = _ANSI.sub("", str(text))
    kept = "".join(
        " " if ch in _SPACES else ch
        for ch in raw
        if ch in _SPACES or unicodedata.category(ch) not in _DROPPED
    )
    line = " ".join(kept.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def plural(n: int | float, noun: str) -> str:
    """'1 record', '2 records', '1,500 records' (irregular plurals are not needed here)."""
    count = f"{n:,.0f}" if float(n).is_integer() else f"{n:,.1f}"
    return f"{count} {noun}" if n == 1 else f"{count} {noun}s"


def duration(seconds: float | None) -> str:
    """A duration in the unit that shows it: '0.4 ms', '12 ms', '3.5 s', '4.2 min', '1.5 h'."""
    if seconds is None:
        return "no data"
    seconds = max(seconds, 0.0)  # a clock a moment behind another is not negative time
    if seconds < 0.01:
        return f"{short(seconds * 1000)} ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{short(seconds)} s"
    if seconds < 7200:
        return f"{short(seconds / 60)} min"
    return f"{short(seconds / 3600)} h"


def short(value: float) -> str:
    """One decimal, without a trailing '.0' ('60 min', not '60.0 min')."""
    text = f"{value:,.1f}"
    return text[:-2] if text.endswith(".0") else text


def number(value: float | None, unit: str = "", digits: int = 1) -> str:
    """'40.0 %', or 'no data' for None (no data is not zero)."""
    return "no data" if value is None else f"{value:,.{digits}f}{unit}"
