"""Load orders and exception records from JSONL, one line = one record with its order.

Every line is validated on its own (strict Pydantic models, bytes decoded per line so one
bad byte rejects one line) and written all or nothing: a bad line is reported with its
1-based number and a reason, and never stops the load or leaves half a line behind.
Good lines go in batches: one bulk INSERT per batch, and, only if that fails (a duplicate
that appeared concurrently), one savepoint per line so the rest of the batch still loads.

Replaying a feed is safe: a line already stored as given is `unchanged`, not an error. One
order may carry several exceptions; a new one is attached to the stored order, which is
merged (see `plan`). An exception stored with different content is rejected, for now.
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
from sqlalchemy import bindparam, insert, select, tuple_, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from enrichment.core import tenants
from enrichment.core.models import ExceptionRecord, Order, utcnow
from enrichment.core.taxonomy import Label
from enrichment.ingestion.plan import Good, Key, OrderWrite, Plan, StoredOrder, plan_batch

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
    """`loaded` lines written; `unchanged` lines already stored exactly as given (a replay);
    `rejected` as (1-based line number, reason)."""

    loaded: int = 0
    unchanged: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)


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


def _order_row(write: OrderWrite) -> dict[str, Any]:
    return {
        "tenant_id": write.tenant_id,
        "external_id": write.external_id,
        "payload": write.payload,
        "events": write.events,
    }


def _record_row(good: Good, order_id: int, now: datetime) -> dict[str, Any]:
    exc = good.line.exception
    return {
        "tenant_id": good.tenant_id,
        "order_id": order_id,
        "external_id": exc.external_id,
        "reason_code": exc.reason_code,
        "severity": exc.severity,
        "notes": exc.notes,
        "reference_label": good.reference_label(),
        "enrichment_state": {},
        "next_attempt_at": now,  # due at once: the next sweep picks it up
        "created_at": now,
        "updated_at": now,
    }


def _stored_exceptions(session: Session, keys: set[Key]) -> dict[Key, dict[str, Any]]:
    """The stored exceptions among `keys`, with the fields a line is compared on."""
    if not keys:
        return {}
    rec = ExceptionRecord
    same_order = (Order.id == rec.order_id) & (Order.tenant_id == rec.tenant_id)
    stmt = (
        select(rec.tenant_id, rec.external_id, Order.external_id.label("order_external_id"),
               rec.reason_code, rec.severity, rec.notes, rec.reference_label)
        .join(Order, same_order)
        .where(tuple_(rec.tenant_id, rec.external_id).in_(keys))
    )  # fmt: skip
    return {(r.tenant_id, r.external_id): r._asdict() for r in session.execute(stmt)}


def _stored_orders(session: Session, keys: set[Key]) -> dict[Key, StoredOrder]:
    if not keys:
        return {}
    stmt = (
        select(Order.id, Order.tenant_id, Order.external_id, Order.payload, Order.events)
        .where(tuple_(Order.tenant_id, Order.external_id).in_(keys))
        # Two loads merging events into one order must not overwrite each other's.
        .with_for_update()
    )
    rows = session.execute(stmt)
    return {(r.tenant_id, r.external_id): StoredOrder(r.id, r.payload, r.events) for r in rows}


def _plan(session: Session, lines: list[Good]) -> Plan:
    exceptions = _stored_exceptions(session, {g.exception_key for g in lines})
    orders = _stored_orders(session, {g.order_key for g in lines})
    return plan_batch(lines, exceptions, orders)


class _Batch:
    """Valid lines waiting to be written; a repeated exception id is caught before the INSERT.

    One order may carry several exceptions, so only exception ids must be unique in a file.
    """

    def __init__(self) -> None:
        self.lines: list[Good] = []
        # (tenant_id, exception external_id) -> first line number, across the whole file.
        self.seen: dict[Key, int] = {}

    def add(self, good: Good) -> None:
        if (first := self.seen.get(good.exception_key)) is not None:
            ext = good.line.exception.external_id
            raise ValueError(f"duplicate exception external_id {ext!r}: first on line {first}")
        self.seen[good.exception_key] = good.line_no
        self.lines.append(good)


_update_order = (
    update(Order.__table__)
    .where(Order.id == bindparam("b_id"), Order.tenant_id == bindparam("b_tenant_id"))
    .values(
        payload=bindparam("b_payload", type_=Order.__table__.c.payload.type),
        events=bindparam("b_events", type_=Order.__table__.c.events.type),
    )
)


def _write_orders(session: Session, plan: Plan) -> dict[Key, int]:
    """Insert the new orders and update the merged ones; every order id the plan needs."""
    ids = dict(plan.order_ids)
    inserts = [w for w in plan.orders.values() if w.id is None]
    if inserts:
        stmt = insert(Order).returning(Order.id, sort_by_parameter_order=True)
        new_ids = session.scalars(stmt, [_order_row(w) for w in inserts]).all()
        ids.update(zip([(w.tenant_id, w.external_id) for w in inserts], new_ids, strict=True))
    updates = [
        {"b_id": w.id, "b_tenant_id": w.tenant_id, "b_payload": w.payload, "b_events": w.events}
        for w in plan.orders.values()
        if w.id is not None
    ]
    if updates:
        session.execute(_update_order, updates)
    return ids


def _apply(session: Session, plan: Plan) -> None:
    if not plan.new:
        return
    ids, now = _write_orders(session, plan), utcnow()
    session.execute(
        insert(ExceptionRecord), [_record_row(g, ids[g.order_key], now) for g in plan.new]
    )


def _count(report: IngestReport, plan: Plan, *, new: bool = True) -> None:
    report.loaded += len(plan.new) if new else 0
    report.unchanged += len(plan.unchanged)
    report.rejected.extend(plan.rejected)


def _write_one(session: Session, good: Good, report: IngestReport) -> None:
    """The slow path: one savepoint per line, so a conflict costs only that line."""
    try:
        with session.begin_nested():
            plan = _plan(session, [good])
            _apply(session, plan)
        _count(report, plan)
    except DBAPIError as exc:  # a unique key taken meanwhile, or a value the database refuses
        reason = f"duplicate or conflicting row: {str(exc.orig).splitlines()[0][:200]}"
        report.rejected.append((good.line_no, reason))


def _flush(factory: sessionmaker[Session], lines: list[Good], report: IngestReport) -> None:
    if not lines:
        return
    with factory.begin() as session:
        plan = _plan(session, lines)
        try:
            with session.begin_nested():
                _apply(session, plan)
            _count(report, plan)
        except DBAPIError:
            # Another writer stored one of these ids since _plan read them: line by line.
            _count(report, plan, new=False)
            for good in plan.new:
                _write_one(session, good, report)


def ingest_file(
    factory: sessionmaker[Session], path: str | Path, *, create_tenants: bool = False
) -> IngestReport:
    """Load `path` (JSONL). Unknown tenants are rejected unless `create_tenants` (False).

    Returns how many lines were written or already stored and, sorted by line number, why
    the others were not.
    """
    report, batch = IngestReport(), _Batch()
    known = _Tenants(factory, create=create_tenants)
    for line_no, raw in _read(Path(path)):
        try:
            line = parse_line(raw, line_no)
            batch.add(Good(line_no, line, known.id_for(line.tenant)))
        except ValueError as exc:
            report.rejected.append((line_no, str(exc)))
        if len(batch.lines) >= BATCH_SIZE:
            _flush(factory, batch.lines, report)
            batch.lines = []
    _flush(factory, batch.lines, report)
    report.rejected.sort()
    log.info(
        "ingest.done",
        path=str(path),
        loaded=report.loaded,
        unchanged=report.unchanged,
        rejected=len(report.rejected),
    )
    return report
