"""Personal data out of one text, in linear time: e-mails, IBANs, card numbers, phones.

Every pattern here is built so that Python's backtracking engine does linear work on any
input (issue 22, finding 1: the old e-mail pattern `[\\w.+-]+@...` retried from every
position of a long run of word characters, 2.5 s for 20,000 of them):
- a match may start only where a run of its characters starts (a negative lookbehind on
  the run's own class), so a run is scanned from its start once, never from each position;
- repetitions that may fail are bounded ({m,n}), and consecutive pieces have disjoint
  classes, so giving back characters never opens a new way to match.
tests/test_redaction.py holds each one to that on 200,000-character adversarial inputs.

A candidate is only a candidate: a card number must pass the Luhn check, an IBAN its
country's length and the mod-97 check, a phone number must have 9 to 15 digits and not be a
bare id, amount or date. Order matters: e-mails first (they may hold digits), then IBANs
(their digits may look like a card), cards (16 digits are not a phone) and phones.
"""

from __future__ import annotations

import re

# An e-mail is found from its "@" (see `_redact_emails`): the local part, up to 256 word
# characters . + - before it; the domain, up to 11 dotted labels of word characters or -.
_LOCAL_CHARS = frozenset("_.+-")
_MAX_LOCAL = 256
_DOMAIN = re.compile(r"[\w-]{1,63}(?:\.[\w-]{1,63}){1,10}")
# Country code, check digits, then 11 to 30 letters or digits, optionally in groups
# separated by one space (the printed form). Checked in `_iban_or_keep`.
_IBAN = re.compile(r"(?<![\w])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}")
# 13 to 19 digits, with single spaces or dashes between them: the whole run, never a piece
# of a longer one (the lookarounds), so a 20-digit id is not read as a card plus a digit.
_CARD = re.compile(r"(?<![\w])(?<!\d[ -])\d(?:[ -]?\d){12,18}(?!\w)(?![ -]\d)")
# A phone candidate: optional + or (, then digits with spaces, dots, dashes or brackets.
_PHONE = re.compile(r"(?<![\w+(])[+(]?\d[\d ().-]{6,20}\d(?!\w)")
_NOT_PHONE = re.compile(r"\d+(?:\.\d+)?|\d{4}-\d{2}-\d{2}.{0,20}")  # bare ids, amounts, dates

# The longest text any pattern above can match (an e-mail: 256 + 1 + 11 x 64): a cut this
# far from a text's end can never split a match (see `redact_prefix`).
MAX_MATCH_CHARS = 1000

# IBAN lengths by country (ISO 13616 registry); an unknown country is checked on mod-97 only.
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def redact(text: str) -> str:
    """`text` with e-mail addresses as [EMAIL], IBANs as [IBAN], card numbers as [CARD] and
    phone numbers as [PHONE]; linear in len(text).

    A phone number is 9 to 15 digits written with a leading + or with separators; a bare run
    of digits is left alone because order ids and amounts look exactly like that.
    """
    text = _redact_emails(text)
    text = _IBAN.sub(_iban_or_keep, text)
    text = _CARD.sub(_card_or_keep, text)
    return _PHONE.sub(_phone_or_keep, text)


def redact_prefix(text: str, limit: int) -> str:
    """At most `limit` characters of `text`, redacted, reading at most limit + 2 x
    MAX_MATCH_CHARS of it: a long text is cut before it is redacted (bounded work), and the
    redacted tail that the cut may have split off a match is dropped before the final cut."""
    scan = limit + 2 * MAX_MATCH_CHARS
    if len(text) <= scan:
        return redact(text)[:limit]
    head = redact(text[:scan])
    return head[: max(0, min(limit, len(head) - MAX_MATCH_CHARS))]


def _redact_emails(text: str) -> str:
    """Each "@" with a local part before it and a domain after it, as [EMAIL].

    Linear: a local part never reaches back past the previous "@" (not one of its
    characters) or the previous match, so each character is read at most once on the way
    back; the domain is one bounded, anchored match."""
    out, done = [], 0
    at = text.find("@")
    while at != -1:
        start, floor = at, max(done, at - _MAX_LOCAL)
        while start > floor and (text[start - 1].isalnum() or text[start - 1] in _LOCAL_CHARS):
            start -= 1
        domain = _DOMAIN.match(text, at + 1) if start < at else None
        if domain is not None:
            out += (text[done:start], "[EMAIL]")
            done = domain.end()
        at = text.find("@", max(at + 1, done))
    out.append(text[done:])
    return "".join(out)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """mod-97 of the IBAN rearranged (country and check digits moved to the end) is 1."""
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def _card_or_keep(match: re.Match[str]) -> str:
    candidate = match.group()
    digits = "".join(ch for ch in candidate if ch.isdigit())
    return "[CARD]" if luhn_ok(digits) else candidate


def _iban_or_keep(match: re.Match[str]) -> str:
    """The IBAN's own characters as [IBAN], the rest of the candidate as it was: a printed
    IBAN may run into a following word ("DE89 3704 0044 0532 0130 00 THX")."""
    candidate = match.group()
    length = _IBAN_LENGTHS.get(candidate[:2].upper())
    compact = candidate.replace(" ", "").upper()
    if length is None:
        return "[IBAN]" if iban_ok(compact) else candidate
    if len(compact) < length or not iban_ok(compact[:length]):
        return candidate
    end = _end_of_nth_alnum(candidate, length)
    return "[IBAN]" + candidate[end:]


def _end_of_nth_alnum(text: str, n: int) -> int:
    seen = 0
    for i, ch in enumerate(text):
        seen += ch != " "
        if seen == n:
            return i + 1
    return len(text)


def _phone_or_keep(match: re.Match[str]) -> str:
    candidate = match.group()
    digits = sum(ch.isdigit() for ch in candidate)
    if not 9 <= digits <= 15 or _NOT_PHONE.fullmatch(candidate):
        return candidate
    return "[PHONE]"
