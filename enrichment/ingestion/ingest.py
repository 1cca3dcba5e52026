"""Load orders and exception records from JSONL, one line = one record with its order.

Every line is validated on its own (strict Pydantic models, bytes decoded per line so one
bad byte rejects one line) and written all or nothing: a bad line is reported with its
1-based number and a reason, and never stops the load or leaves half a line behind.
Good lines go in batches: one bulk INSERT per batch, and, only if that fails (a duplicate
that appeared concurrently), one savepoint per line so the rest of the batch still loads.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import structlog
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
)
from sqlalchemy import insert, select, tuple_
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from enrichment.core import tenants
from enrichment.core.models import ExceptionRecord, Order, utcnow
from enrichment.core.taxonomy import Label

log = structlog.get_logger(__name__)

BATCH_SIZE = 500
# A line longer than this is refused before parsing (bytes): no one record is this big.
MAX_LINE_BYTES = 2_000_000
MAX_NOTES_CHARS = 10_000
MAX_EVENTS = 500


class _Strict(BaseModel):
    # strict: "3" is not an int and 1 is not a string; unknown keys are a mistake.
    model_config = ConfigDict(extra="forbid", strict=True)


class EventIn(_Strict):
    source: Literal["wms", "carrier", "payment", "system"]
    type: str = Field(min_length=1, max_length=64)
    at: AwareDatetime
    detail: str = Field(default="", max_length=2000)

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
    notes: str | None = Field(default=None, max_length=MAX_NOTES_CHARS)
    # Ground truth for evaluation only; stored as reference_label, read by no stage.
    true_label: Label | None = None


class LineIn(_Strict):
    tenant: str = Field(max_length=63)
    order: OrderIn
    exception: ExceptionIn

    @field_validator("tenant")
    @classmethod
    def _tenant_name(cls, name: str) -> str:
        return tenants.validate_name(name)


@dataclass
class IngestReport:
    """`loaded` lines written; `rejected` as (1-based line number, reason)."""

    loaded: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Good:
    line_no: int
    line: LineIn
    tenant_id: int


def _describe(exc: ValidationError) -> str:
    """The first few errors as `field.path: message`, short enough for a terminal."""
    parts = []
    for err in exc.errors(include_url=False)[:3]:
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
    more = exc.error_count() - 3
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def _decode(raw: bytes, line_no: int) -> str:
    if line_no == 1:
        raw = raw.removeprefix(b"\xef\xbb\xbf")  # a BOM from spreadsheet exports
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"invalid UTF-8 at byte {exc.start}") from None


def parse_line(raw: bytes, line_no: int) -> LineIn:
    """One line validated; raises ValueError with a readable reason."""
    if len(raw) > MAX_LINE_BYTES:
        raise ValueError(f"line is {len(raw)} bytes, over the {MAX_LINE_BYTES} byte limit")
    text = _decode(raw, line_no)
    if "\\u0000" in text:
        # PostgreSQL text and jsonb cannot hold NUL: refuse it here, not as a failed INSERT.
        raise ValueError("contains a NUL character (\\u0000), which cannot be stored")
    try:
        return LineIn.model_validate_json(text)
    except ValidationError as exc:
        raise ValueError(_describe(exc)) from None


def _read(path: Path) -> Iterator[tuple[int, bytes]]:
    """Non-blank lines in binary with their 1-based numbers (blank lines are skipped)."""
    with path.open("rb") as f:
        for line_no, raw in enumerate(f, start=1):
            raw = raw.rstrip(b"\r\n")
            if raw.strip():
                yield line_no, raw


class _Tenants:
    """Tenant name -> id, looked up once per name; created only when allowed."""

    def __init__(self, factory: sessionmaker[Session], *, create: bool) -> None:
        self.factory, self.create = factory, create
        self.ids: dict[str, int | None] = {}

    def id_for(self, name: str) -> int:
        if name not in self.ids:
            self.ids[name] = self._load(name)
        if self.ids[name] is None:
            raise ValueError(f"unknown tenant {name!r} (use --create-tenants to create it)")
        return self.ids[name]

    def _load(self, name: str) -> int | None:
        with self.factory.begin() as session:
            if self.create:
                return tenants.get_or_create(session, name).id
            tenant = tenants.by_name(session, name)
            return tenant.id if tenant is not None else None


def _order_row(good: _Good) -> dict[str, Any]:
    order = good.line.order
    return {
        "tenant_id": good.tenant_id,
        "external_id": order.external_id,
        "payload": order.payload,
        "events": [e.model_dump(mode="json") for e in order.events],
    }


def _record_row(good: _Good, order_id: int, now: datetime) -> dict[str, Any]:
    exc = good.line.exception
    return {
        "tenant_id": good.tenant_id,
        "order_id": order_id,
        "external_id": exc.external_id,
        "reason_code": exc.reason_code,
        "severity": exc.severity,
        "notes": exc.notes,
        "reference_label": str(exc.true_label) if exc.true_label else None,
        "enrichment_state": {},
        "next_attempt_at": now,  # due at once: the next sweep picks it up
        "created_at": now,
        "updated_at": now,
    }


def _existing(session: Session, model: type, keys: set[tuple[int, str]]) -> set[tuple[int, str]]:
    if not keys:
        return set()
    cols = tuple_(model.tenant_id, model.external_id)
    rows = session.execute(select(model.tenant_id, model.external_id).where(cols.in_(keys)))
    return {tuple(r) for r in rows}


class _Batch:
    """Valid lines waiting to be written; duplicates are caught before the INSERT."""

    def __init__(self) -> None:
        self.lines: list[_Good] = []
        # (kind, tenant_id, external_id) -> first line number, across the whole file.
        self.seen: dict[tuple[str, int, str], int] = {}

    def add(self, good: _Good) -> None:
        keys = [
            ("order", good.tenant_id, good.line.order.external_id),
            ("exception", good.tenant_id, good.line.exception.external_id),
        ]
        for kind, _, ext in keys:
            if (first := self.seen.get((kind, good.tenant_id, ext))) is not None:
                raise ValueError(f"duplicate {kind} external_id {ext!r}: first on line {first}")
        self.seen.update(dict.fromkeys(keys, good.line_no))
        self.lines.append(good)


def _drop_known(session: Session, lines: list[_Good], report: IngestReport) -> list[_Good]:
    """Lines whose order or exception external id is already stored are rejected."""
    orders = _existing(session, Order, {(g.tenant_id, g.line.order.external_id) for g in lines})
    excs = _existing(
        session, ExceptionRecord, {(g.tenant_id, g.line.exception.external_id) for g in lines}
    )
    fresh = []
    for g in lines:
        if (g.tenant_id, g.line.order.external_id) in orders:
            ext = g.line.order.external_id
            report.rejected.append(
                (g.line_no, f"duplicate order external_id {ext!r} already stored")
            )
        elif (g.tenant_id, g.line.exception.external_id) in excs:
            ext = g.line.exception.external_id
            report.rejected.append(
                (g.line_no, f"duplicate exception external_id {ext!r} already stored")
            )
        else:
            fresh.append(g)
    return fresh


def _bulk_insert(session: Session, lines: list[_Good]) -> None:
    if not lines:
        return
    now = utcnow()
    ids = session.scalars(
        insert(Order).returning(Order.id, sort_by_parameter_order=True),
        [_order_row(g) for g in lines],
    ).all()
    rows = [_record_row(g, order_id, now) for g, order_id in zip(lines, ids, strict=True)]
    session.execute(insert(ExceptionRecord), rows)


def _insert_one(session: Session, good: _Good, report: IngestReport) -> None:
    """The slow path: one savepoint per line, so a conflict costs only that line."""
    try:
        with session.begin_nested():
            _bulk_insert(session, [good])
        report.loaded += 1
    except DBAPIError as exc:  # a unique key taken meanwhile, or a value the database refuses
        reason = f"duplicate or conflicting row: {str(exc.orig).splitlines()[0][:200]}"
        report.rejected.append((good.line_no, reason))


def _flush(factory: sessionmaker[Session], lines: list[_Good], report: IngestReport) -> None:
    if not lines:
        return
    with factory.begin() as session:
        fresh = _drop_known(session, lines, report)
        try:
            with session.begin_nested():
                _bulk_insert(session, fresh)
            report.loaded += len(fresh)
        except DBAPIError:
            # Another writer inserted one of these ids since _drop_known: go line by line.
            for good in fresh:
                _insert_one(session, good, report)


def ingest_file(
    factory: sessionmaker[Session], path: str | Path, *, create_tenants: bool = False
) -> IngestReport:
    """Load `path` (JSONL). Unknown tenants are rejected unless `create_tenants` (False).

    Returns how many lines were written and, sorted by line number, why others were not.
    """
    report, batch = IngestReport(), _Batch()
    known = _Tenants(factory, create=create_tenants)
    for line_no, raw in _read(Path(path)):
        try:
            line = parse_line(raw, line_no)
            batch.add(_Good(line_no, line, known.id_for(line.tenant)))
        except ValueError as exc:
            report.rejected.append((line_no, str(exc)))
        if len(batch.lines) >= BATCH_SIZE:
            _flush(factory, batch.lines, report)
            batch.lines = []
    _flush(factory, batch.lines, report)
    report.rejected.sort()
    log.info("ingest.done", path=str(path), loaded=report.loaded, rejected=len(report.rejected))
    return report
