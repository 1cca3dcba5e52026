"""Where one customer's personal data lives, and how a value is scrubbed of it (pure).

PERSONAL_DATA is the one list: every table and column that can hold a customer's names,
e-mails, phones, addresses or free text, with the column that ties a row to the order (the
order's id, its records' ids, or their outbox events' ids). Erasure (history/erasure.py)
scrubs these columns of the order's rows in the database and in the archives; a test reads
every text and JSON column of every table afterwards, so a column missing here shows up.

Three ways to scrub a column:
- ERASE: free text (notes, review notes): the whole value becomes "[erased]" (NULL stays NULL).
- WALK: JSON (the order's payload and events, the AI's analysis, event data): values under a
  personal key (email, phone, an address or customer object but its country) or a free-text
  key (note, summary, rationale, evidence, problems, detail) become "[erased]"; keys, numbers,
  labels, states and timestamps stay, and so does the length of every list.
- KNOWN: system text (errors, escalation reasons) keeps its words, with the order's own
  personal strings (collected from its payload) replaced wherever they appear.
WALK replaces the known strings in the strings it keeps, too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ERASED = "[erased]"
ERASE, WALK, KNOWN = "erase", "walk", "known"
ORDER, RECORD, EVENT = "order", "record", "event"  # what a row's link column holds


@dataclass(frozen=True)
class PersonalColumns:
    """A table's columns that may hold personal data, and its link to the order.

    link: the column holding the id that ties a row to the order; of: what that id is (the
    order's id, one of its records' ids, or one of their outbox events' ids)."""

    columns: Mapping[str, str]  # column -> ERASE, WALK or KNOWN
    link: str
    of: str


PERSONAL_DATA: dict[str, PersonalColumns] = {
    "orders": PersonalColumns({"payload": WALK, "events": WALK}, "id", ORDER),
    "exception_records": PersonalColumns(
        {
            "notes": ERASE,
            "ai_notes": ERASE,
            "ai_analysis": WALK,
            "ai_resolution": WALK,
            "enrichment_state": WALK,
            "escalation_reason": KNOWN,
        },
        "order_id",
        ORDER,
    ),
    # Attempts keep no prompt or answer text: `detail` holds a reopen's replaced result or
    # an experiment's variant, `error` the provider's message (which may quote an answer).
    "enrichment_attempts": PersonalColumns({"error": KNOWN, "detail": WALK}, "record_id", RECORD),
    "outbox_events": PersonalColumns({"data": WALK, "last_error": KNOWN}, "record_id", RECORD),
    "resolution_actions": PersonalColumns({"note": ERASE}, "record_id", RECORD),
    "reviews": PersonalColumns({"note": ERASE}, "record_id", RECORD),
    # A receiver's error text may echo the payload it was sent.
    "webhook_deliveries": PersonalColumns({"error": KNOWN}, "event_id", EVENT),
    # Shadow answers keep a label, a confidence and costs: no text. Listed so a new text
    # column there is a decision, not an oversight.
    "shadow_answers": PersonalColumns({}, "record_id", RECORD),
}

# JSON keys whose values are a person's data, wherever they appear.
PERSONAL_KEYS = frozenset(
    {"email", "contact_email", "phone", "first_name", "last_name", "address1", "address2",
     "city", "province", "zip", "company", "latitude", "longitude", "browser_ip"}
)  # fmt: skip
# JSON objects that describe a person: every string inside is erased (but KEEP_KEYS).
PERSONAL_OBJECTS = frozenset(
    {"customer", "shipping_address", "billing_address", "default_address", "client_details"}
)
# Free text: what a customer, a carrier, a person or the AI wrote.
FREE_TEXT_KEYS = frozenset(
    {"note", "notes", "ai_notes", "note_attributes", "summary", "rationale", "evidence",
     "problems", "detail", "description", "comment", "message", "escalation_reason"}
)  # fmt: skip
# Kept inside an erased object: coarse, and what the labels and reports group by.
KEEP_KEYS = frozenset({"country_code", "country", "label", "confidence", "type", "source", "at"})
MIN_KNOWN_CHARS = 4  # shorter strings ("ON", "12") are erased by key, not searched for


def known_strings(payloads: Iterable[Any]) -> frozenset[str]:
    """The personal strings of the orders' payloads (e-mail, phone, names, address lines),
    plus each name's words and each phone's digits, to search for in text kept elsewhere."""
    found: set[str] = set()
    for payload in payloads:
        _collect(payload, False, None, found)
    return frozenset(s for s in found if len(s) >= MIN_KNOWN_CHARS and s != ERASED)


def _collect(value: Any, personal: bool, key: str | None, found: set[str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            inner = k not in KEEP_KEYS and (personal or k in PERSONAL_KEYS | PERSONAL_OBJECTS)
            _collect(v, inner, k, found)
    elif isinstance(value, list):
        for v in value:
            _collect(v, personal, key, found)
    elif isinstance(value, str) and personal:
        found.add(value.strip())
        if key in {"name", "first_name", "last_name"}:
            found.update(value.split())
        if key == "phone":
            found.add(re.sub(r"\D", "", value))


def matcher(known: Iterable[str]) -> re.Pattern[str] | None:
    """One case-insensitive pattern for the known strings, longest first."""
    words = sorted(set(known), key=len, reverse=True)
    return re.compile("|".join(map(re.escape, words)), re.IGNORECASE) if words else None


def scrub_value(how: str, value: Any, known: re.Pattern[str] | None) -> Any:
    """`value` scrubbed the column's way (ERASE, WALK or KNOWN); NULL stays NULL."""
    if value is None:
        return None
    if how == ERASE:
        return ERASED if value != "" else value
    if how == KNOWN:
        return _replace(value, known) if isinstance(value, str) else _walk(value, False, known)
    return _walk(value, False, known)


def _walk(value: Any, erase: bool, known: re.Pattern[str] | None) -> Any:
    if isinstance(value, dict):
        return {k: _walk(v, _erases(k, erase), known) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, erase, known) for v in value]
    if isinstance(value, str):
        return ERASED if erase and value else _replace(value, known)
    return value


def _erases(key: str, erase: bool) -> bool:
    if key in KEEP_KEYS:
        return False
    return erase or key in PERSONAL_KEYS or key in PERSONAL_OBJECTS or key in FREE_TEXT_KEYS


def _replace(text: str, known: re.Pattern[str] | None) -> str:
    return text if known is None else known.sub(ERASED, text)


def scrub_row(table: str, row: Mapping[str, Any], known: re.Pattern[str] | None) -> dict[str, Any]:
    """The row's personal columns that scrubbing changes, with their new values."""
    spec = PERSONAL_DATA[table]
    out = {}
    for column, how in spec.columns.items():
        if column in row:
            new = scrub_value(how, row[column], known)
            if new != row[column]:
                out[column] = new
    return out
