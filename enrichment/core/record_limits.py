"""How big one record may be, checked in bounded time: at ingestion, and again by a stage.

Ingestion refuses a line or item over the limits (settings `RecordLimits`) with the reason
and the field to blame. A stored record can still be over them (a row older than a limit,
or written around ingestion): `refusal` turns it into a record fault (PermanentError,
cause `too_large`) before any AI call, so it is escalated to a person at once instead of
holding a worker thread while a prompt is built from it (issue 22, finding 1).

The walk is iterative (no recursion, whatever the depth) and stops at the first problem;
it visits at most MAX_VALUES values, more than a line ingestion accepts can hold.
"""

from __future__ import annotations

import json
from typing import Any

from enrichment.core.errors import PermanentError
from enrichment.core.faults import Cause, with_cause
from enrichment.core.provider import RecordContext
from enrichment.core.settings_sections import RecordLimits

# A line is at most 2,000,000 bytes (ingestion/lines.py) and a value takes at least 2 of
# them ("0,"), so a record with more values than this was never ingested.
MAX_VALUES = 1_000_000
MAX_EVENTS = 500


class TooLarge(ValueError):
    """What is over a limit: `str()` is the reason, `field` the dotted path to blame."""

    def __init__(self, reason: str, field: str) -> None:
        super().__init__(reason)
        self.field = field


def _name(key: str) -> str:
    """A key as a path part: cut, so a huge key never makes a huge message."""
    return key if len(key) <= 40 else key[:37] + "..."


def check_value(value: Any, limits: RecordLimits, where: str) -> None:
    """Raise TooLarge for the first key, depth, text or count over `limits` in `value`."""
    keys = pushed = 0
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, str) and len(node) > limits.max_text_chars:
            raise TooLarge(
                f"a text of {len(node):,} characters, over the {limits.max_text_chars:,}"
                " character limit",
                path,
            )
        if not isinstance(node, dict | list):
            continue
        if depth >= limits.max_depth:
            raise TooLarge(f"nested deeper than the limit of {limits.max_depth}", path)
        pushed += len(node)
        if pushed > MAX_VALUES:  # counted before pushing: the stack stays bounded too
            raise TooLarge(f"more than {MAX_VALUES:,} values", where)
        if isinstance(node, list):
            stack.extend((v, f"{path}.{i}", depth + 1) for i, v in enumerate(node))
            continue
        keys += len(node)
        if keys > limits.max_keys:
            raise TooLarge(f"more than {limits.max_keys:,} keys (counted at every depth)", where)
        for key, child in node.items():
            if len(key) > limits.max_key_chars:
                raise TooLarge(
                    f"a key of {len(key):,} characters ({_name(key)!r}), over the"
                    f" {limits.max_key_chars} character limit",
                    path,
                )
            stack.append((child, f"{path}.{_name(key)}", depth + 1))


def check_notes(notes: str | None, limits: RecordLimits, where: str) -> None:
    if notes is not None and len(notes) > limits.max_notes_chars:
        raise TooLarge(
            f"{len(notes):,} characters, over the {limits.max_notes_chars:,} character limit",
            where,
        )


def check_detail(detail: Any, limits: RecordLimits, where: str) -> None:
    """An event's object detail: within the payload's limits (keys, depth, key and text
    lengths), and at most `max_text_chars` characters as compact JSON (so an object detail
    is never bigger than the longest text a record may hold). A string detail is bounded by
    the line format (ingestion/lines.py)."""
    if not isinstance(detail, dict | list):
        return
    check_value(detail, limits, where)
    size = len(json.dumps(detail, ensure_ascii=False, separators=(",", ":")))
    if size > limits.max_text_chars:
        raise TooLarge(
            f"an object of {size:,} characters as JSON, over the {limits.max_text_chars:,}"
            " character limit",
            where,
        )


def check_record(ctx: RecordContext, limits: RecordLimits) -> None:
    """A stored record against the limits ingestion holds it to; TooLarge if over one."""
    check_notes(ctx.notes, limits, "notes")
    check_value(ctx.order, limits, "order")
    events = ctx.events if isinstance(ctx.events, list) else [ctx.events]
    if len(events) > MAX_EVENTS:
        raise TooLarge(f"{len(events):,} events, over the {MAX_EVENTS} event limit", "events")
    for i, event in enumerate(events):
        check_value(event, limits, f"events.{i}")
        if isinstance(event, dict):
            check_detail(event.get("detail"), limits, f"events.{i}.detail")


def refusal(ctx: RecordContext, limits: RecordLimits) -> PermanentError | None:
    """The record fault of a record over the limits (escalated at once: retrying cannot
    shrink it), or None when it is within them."""
    try:
        check_record(ctx, limits)
    except TooLarge as exc:
        error = PermanentError(f"record over the ingestion limits: {exc.field}: {exc}")
        return with_cause(error, Cause.TOO_LARGE)  # type: ignore[return-value]
    return None
