"""One record in: the line format, validated strictly, for a JSONL file and the API alike.

A line (or an API item) is one exception with its order. Validation is strict Pydantic on
the JSON text (so "3" is not an int and an unknown key is a mistake); a file line and an API
item go through the same `_validate`, so they share every limit and every message. A mistake
is a `LineError` carrying the one-line reason and, where one field is to blame, its dotted
path ("exception.severity", "order.events.0.at").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC
from functools import cached_property
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
)

from enrichment.core import order_events, tenants
from enrichment.core.record_limits import (
    MAX_EVENTS,
    TooLarge,
    check_detail,
    check_notes,
    check_value,
)
from enrichment.core.settings import RecordLimits, get_settings
from enrichment.core.taxonomy import Label

# A line longer than this is refused before parsing (bytes): no one record is this big.
MAX_LINE_BYTES = 2_000_000
# The default of ENRICHMENT_RECORD_MAX_NOTES_CHARS; the payload's limits are settings too.
MAX_NOTES_CHARS = RecordLimits().max_notes_chars
MAX_DETAIL_CHARS = order_events.DETAIL_TEXT_CHARS  # a string detail's longest

Key = tuple[int, str]  # (tenant_id, external_id)


class LineError(ValueError):
    """Why one line or item is refused: `str()` is the reason, `field` the path to blame."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.field = field


class _Strict(BaseModel):
    # strict: "3" is not an int and 1 is not a string; unknown keys are a mistake.
    model_config = ConfigDict(extra="forbid", strict=True)


class EventIn(_Strict):
    # Any short name, lowercased: the known ones (order_events.KNOWN_SOURCES) have their
    # meaning, the others are read by their words.
    source: str
    type: str = Field(min_length=1, max_length=64)
    at: AwareDatetime
    # Text, or a JSON object kept as sent (bounded by the record limits: _check_limits).
    detail: str | dict[str, Any] = ""

    @field_validator("source")
    @classmethod
    def _source(cls, source: str) -> str:
        try:
            return order_events.source_name(source)
        except ValueError as exc:
            raise ValueError(f"{exc}, not {shown(source)}") from None

    @field_validator("detail", mode="before")
    @classmethod
    def _detail(cls, detail: Any) -> Any:
        # null is no detail; one clear reason, not the union's two for anything else.
        if detail is None:
            return ""
        if not isinstance(detail, str | dict):
            raise ValueError("a detail is a string or a JSON object")
        if isinstance(detail, str) and len(detail) > MAX_DETAIL_CHARS:
            raise ValueError(f"a detail string is at most {MAX_DETAIL_CHARS} characters")
        return detail

    @field_serializer("at")
    def _utc(self, at: AwareDatetime) -> str:
        return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


class OrderIn(_Strict):
    external_id: str = Field(min_length=1, max_length=128)
    # The Shopify-like payload is the source system's own shape: kept as given.
    payload: dict[str, Any]
    events: list[EventIn] = Field(default_factory=list, max_length=MAX_EVENTS)


class ExceptionIn(_Strict):
    external_id: str = Field(min_length=1, max_length=128)
    reason_code: str = Field(min_length=1, max_length=64)
    severity: Literal["low", "medium", "high", "critical"]
    notes: str | None = None  # at most ENRICHMENT_RECORD_MAX_NOTES_CHARS (_check_limits)
    # 0-100: how urgent within its severity (e.g. order value, an SLA at risk); see
    # enrichment/core/scheduling.py for how it orders the claim.
    priority: int | None = Field(default=None, ge=0, le=100)
    # Ground truth for evaluation only; stored as reference_label, read by no stage.
    true_label: Label | None = None


class LineIn(_Strict):
    tenant: str = Field(max_length=63)
    order: OrderIn
    exception: ExceptionIn
    # Re-enrich an already enriched (or escalated) record whose inputs this line changes.
    reenrich: bool = False

    @field_validator("tenant")
    @classmethod
    def _tenant_name(cls, name: str) -> str:
        return tenants.validate_name(name)


@dataclass(frozen=True)
class Good:
    """A line that passed validation, with its tenant resolved. `pos` is its place in the
    input: the 1-based line number of a file, the 0-based index of an API item."""

    pos: int
    line: LineIn
    tenant_id: int

    @property
    def order_key(self) -> Key:
        return self.tenant_id, self.line.order.external_id

    @property
    def exception_key(self) -> Key:
        return self.tenant_id, self.line.exception.external_id

    @cached_property
    def events(self) -> list[dict[str, Any]]:
        """The order's events as stored (UTC "...Z" times); computed once per line."""
        return [e.model_dump(mode="json") for e in self.line.order.events]

    def reference_label(self) -> str | None:
        label = self.line.exception.true_label
        return str(label) if label else None

    def inputs(self) -> dict[str, Any]:
        """The exception's stored inputs, by column (what an update compares and writes)."""
        exc = self.line.exception
        return {
            "reason_code": exc.reason_code,
            "severity": exc.severity,
            "notes": exc.notes,
            "priority": exc.priority,
            "reference_label": self.reference_label(),
        }


def shown(value: Any) -> str:
    """`value` for a message: repr, cut to 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _describe(exc: ValidationError) -> LineError:
    """The first few errors as `field.path: message`, short enough for a terminal."""
    errors = exc.errors(include_url=False)
    parts = []
    for err in errors[:3]:
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
    more = exc.error_count() - 3
    first = ".".join(str(p) for p in errors[0]["loc"]) if errors else ""
    return LineError("; ".join(parts) + (f" (+{more} more)" if more > 0 else ""), first or None)


def _check_size(raw: bytes) -> None:
    if len(raw) > MAX_LINE_BYTES:
        raise LineError(f"line is {len(raw)} bytes, over the {MAX_LINE_BYTES} byte limit")


def _check_limits(line: LineIn, limits: RecordLimits) -> None:
    """The record's size limits (settings), which a stage holds a stored record to as well."""
    try:
        check_notes(line.exception.notes, limits, "exception.notes")
        check_value(line.order.payload, limits, "order.payload")
        for i, event in enumerate(line.order.events):
            check_detail(event.detail, limits, f"order.events.{i}.detail")
    except TooLarge as exc:
        raise LineError(f"{exc.field}: {exc}", exc.field) from None


def _validate(raw: bytes, text: str, limits: RecordLimits | None) -> LineIn:
    _check_size(raw)
    if "\\u0000" in text:
        # PostgreSQL text and jsonb cannot hold NUL: refuse it here, not as a failed INSERT.
        raise LineError("contains a NUL character (\\u0000), which cannot be stored")
    try:
        line = LineIn.model_validate_json(text)
    except ValidationError as exc:
        raise _describe(exc) from None
    _check_limits(line, limits or get_settings().record_limits)
    return line


def parse_line(raw: bytes, line_no: int, *, limits: RecordLimits | None = None) -> LineIn:
    """One file line validated; raises LineError with a readable reason. limits: the
    record's size limits (default: the settings')."""
    _check_size(raw)  # before decoding a huge line
    if line_no == 1:
        raw = raw.removeprefix(b"\xef\xbb\xbf")  # a BOM from spreadsheet exports
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LineError(f"invalid UTF-8 at byte {exc.start}") from None
    return _validate(raw, text, limits)


def parse_item(item: Any, tenant: str, *, limits: RecordLimits | None = None) -> LineIn:
    """One API item (already decoded JSON) validated as the line it stands for: the tenant
    comes from the path; an item that names another tenant is refused."""
    if not isinstance(item, dict):
        raise LineError("an item must be a JSON object")
    named = item.get("tenant", tenant)
    if named != tenant:
        raise LineError(f"tenant {shown(named)} is not the path's tenant {tenant!r}", "tenant")
    try:
        # Back to JSON text: strict validation reads datetimes from JSON strings only.
        text = json.dumps({**item, "tenant": tenant}, ensure_ascii=False)
        raw = text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate escape such as "\ud800"
        raise LineError(f"invalid Unicode (a lone surrogate) at character {exc.start}") from None
    except (RecursionError, ValueError):
        raise LineError("nested too deeply to be a record") from None
    return _validate(raw, text, limits)


def parse_order(item: Any, *, limits: RecordLimits | None = None) -> OrderIn:
    """One order without an exception (`POST /api/enrichment/orders/{tenant}`), validated as a
    line's `order` is: same model, limits and messages (fields named from `order.`)."""
    if not isinstance(item, dict):
        raise LineError("an item must be a JSON object")
    try:
        text = json.dumps(item, ensure_ascii=False)
    except UnicodeEncodeError as exc:
        raise LineError(f"invalid Unicode (a lone surrogate) at character {exc.start}") from None
    except (RecursionError, ValueError):
        raise LineError("nested too deeply to be an order") from None
    _check_size(text.encode("utf-8"))
    if "\\u0000" in text:
        raise LineError("contains a NUL character (\\u0000), which cannot be stored")
    try:
        order = OrderIn.model_validate_json(text)
    except ValidationError as exc:
        raise _describe(exc) from None
    limits = limits or get_settings().record_limits
    try:
        check_value(order.payload, limits, "payload")
        for i, event in enumerate(order.events):
            check_detail(event.detail, limits, f"events.{i}.detail")
    except TooLarge as exc:
        raise LineError(f"{exc.field}: {exc}", exc.field) from None
    return order


def external_id_of(item: Any) -> str | None:
    """The exception external id an item names, if it names a usable one (for answers)."""
    exc = item.get("exception") if isinstance(item, dict) else None
    ext = exc.get("external_id") if isinstance(exc, dict) else None
    return ext if isinstance(ext, str) and 0 < len(ext) <= 128 else None


class Seen:
    """Exception ids already taken in this input: one input may name an exception only once
    (one order may carry several exceptions, so order ids may repeat)."""

    def __init__(self, unit: str) -> None:
        self.unit = unit  # "line" or "item": how a message points at the first one
        self.first: dict[Key, int] = {}

    def check(self, good: Good) -> None:
        if (first := self.first.get(good.exception_key)) is not None:
            ext = good.line.exception.external_id
            raise LineError(
                f"duplicate exception external_id {ext!r}: first on {self.unit} {first}",
                "exception.external_id",
            )
        self.first[good.exception_key] = good.pos
