"""The pull route's query: one tenant's events after a cursor, in an order that never skips.

Ids come from a sequence, so a transaction can commit an event with a smaller id after a
reader has already passed a larger one; paging by id alone would skip it for good. So the
order is (tx, id), where `tx` is the writing transaction's id (a server default on
PostgreSQL), and a page shows only events of transactions older than every transaction
still running (`pg_snapshot_xmin`): a later commit always has a larger `tx` than anything
already shown, and the cursor only grows. On SQLite (one writer; `tx` is 0) the order is by id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy import BigInteger, Text, func, select, tuple_
from sqlalchemy.orm import Session

from enrichment.core.models import OutboxEvent
from enrichment.core.outbox import envelope, webhook_id

E = OutboxEvent
# Both parts are bigints; 18 digits always fit one (and reach far past any real id).
CURSOR_PATTERN = r"^(\d{1,18})-(\d{1,18})$"
_CURSOR = re.compile(CURSOR_PATTERN)


@dataclass(frozen=True, order=True)
class Cursor:
    """A position in one tenant's events: after (tx, id). Shown as "<tx>-<id>"."""

    tx: int
    id: int

    def __str__(self) -> str:
        return f"{self.tx}-{self.id}"

    @classmethod
    def parse(cls, raw: str) -> Cursor:
        """The cursor `raw` names, or ValueError with a one-line message."""
        match = _CURSOR.match(raw)
        if match is None:
            raise ValueError("malformed cursor: pass the `next` value of the previous page")
        return cls(int(match[1]), int(match[2]))


class PulledEvent(BaseModel):
    """One event as the pull route shows it: the webhook body's fields plus its ids and status."""

    id: int
    webhook_id: str
    type: str
    timestamp: str
    data: dict[str, Any]
    status: str


class EventPage(BaseModel):
    """A page of events, and `next`: the cursor to pass as `after` next time (unchanged when
    the page is empty; null before the first event)."""

    events: list[PulledEvent]
    next: str | None


def page(session: Session, tenant_id: int, *, after: Cursor | None, limit: int) -> EventPage:
    """Up to `limit` of the tenant's events after `after`, in cursor order."""
    stmt = select(E).where(E.tenant_id == tenant_id).order_by(E.tx, E.id).limit(limit)
    if after is not None:
        stmt = stmt.where(tuple_(E.tx, E.id) > tuple_(after.tx, after.id))
    if session.get_bind().dialect.name == "postgresql":
        # Only finished transactions: one still running could commit a smaller tx later.
        horizon = func.pg_snapshot_xmin(func.pg_current_snapshot()).cast(Text).cast(BigInteger)
        stmt = stmt.where(E.tx < horizon)
    rows = session.scalars(stmt).all()
    nxt = Cursor(rows[-1].tx, rows[-1].id) if rows else after
    return EventPage(events=[_pulled(r) for r in rows], next=None if nxt is None else str(nxt))


def _pulled(row: OutboxEvent) -> PulledEvent:
    env = envelope(row.type, row.data, row.created_at)
    return PulledEvent(
        id=row.id,
        webhook_id=webhook_id(row.id),
        type=row.type,
        timestamp=env["timestamp"],
        data=row.data,
        status=row.status,
    )
