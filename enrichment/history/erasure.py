"""Erasure of one customer's personal data: an order, everything that refers to it, and its
archived rows (issue 26). `enrichment erase TENANT --order ID` and the admin API call it.

What is scrubbed, and how, is history/personal_data.py's PERSONAL_DATA: the order's payload
and events, its records' notes and the AI's text, their attempts, outbox events (and the
delivery log's errors), actions' and reviews' notes; the same columns of the archived rows.
Rows are never deleted: counts, labels, confidences, states and timestamps stay (a record's
`updated_at` too: erasing is not a change the pipeline should see). Idempotent: a second run
finds nothing left to change and reports zeros.

The caller's transaction holds the database changes; archive parts are rewritten before it
commits, so a failure leaves the database as it was and a second run finishes the job.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Table, select, update
from sqlalchemy.orm import Session

from enrichment.core import delivery_log, shadow_answers  # noqa: F401 (their tables)
from enrichment.core.models import Base
from enrichment.history import archive
from enrichment.history.personal_data import (
    EVENT,
    ORDER,
    PERSONAL_DATA,
    RECORD,
    known_strings,
    matcher,
    scrub_row,
)

CHUNK = 500  # ids per IN list


class UnknownOrder(LookupError):
    """No such order for the tenant, in the database or its archives."""

    def __init__(self, tenant: str, external_id: str) -> None:
        super().__init__(
            f"tenant {tenant!r} has no order {external_id!r} (in the database or its archives)"
        )


@dataclass
class Targets:
    """The ids of the order's rows: the order, its records, their outbox events."""

    ids: dict[str, set[int]] = field(default_factory=lambda: {ORDER: set(), RECORD: set(),
                                                              EVENT: set()})  # fmt: skip
    payloads: list[Any] = field(default_factory=list)

    def owns(self, table: str, row: dict[str, Any]) -> bool:
        spec = PERSONAL_DATA.get(table)
        return spec is not None and row.get(spec.link) in self.ids[spec.of]


@dataclass(frozen=True)
class Erased:
    """Rows scrubbed per table, in the database and in the archives."""

    database: dict[str, int]
    archives: dict[str, int]


def _table(name: str) -> Table:
    return Base.metadata.tables[name]


def erase_order(
    s: Session, tenant_id: int, tenant: str, external_id: str, *, archive_dir: str | Path | None
) -> Erased:
    """Scrub the order `external_id` of the tenant and all that refers to it."""
    targets = _database_targets(s, tenant_id, external_id)
    if archive_dir is not None:
        _archive_targets(archive_dir, tenant, external_id, targets)
    if not targets.ids[ORDER]:
        raise UnknownOrder(tenant, external_id)
    known = matcher(known_strings(targets.payloads))
    database = {name: _scrub_table(s, tenant_id, name, targets, known) for name in PERSONAL_DATA}
    archives: dict[str, int] = {}
    if archive_dir is not None:
        archives = archive.rewrite(
            archive_dir, tenant, lambda t, row: _edit(t, row, targets, known)
        )
    return Erased(database, archives)


def _database_targets(s: Session, tenant_id: int, external_id: str) -> Targets:
    orders, records, events = (_table(n) for n in ("orders", "exception_records", "outbox_events"))
    targets = Targets()
    found = s.execute(
        select(orders.c.id, orders.c.payload).where(
            orders.c.tenant_id == tenant_id, orders.c.external_id == external_id
        )
    ).all()
    for order_id, payload in found:
        targets.ids[ORDER].add(order_id)
        targets.payloads.append(payload)
    targets.ids[RECORD] |= _ids(s, records, tenant_id, records.c.order_id, targets.ids[ORDER])
    targets.ids[EVENT] |= _ids(s, events, tenant_id, events.c.record_id, targets.ids[RECORD])
    return targets


def _ids(s: Session, table: Table, tenant_id: int, column, among: set[int]) -> set[int]:
    out: set[int] = set()
    for chunk in _chunks(among):
        q = select(table.c.id).where(table.c.tenant_id == tenant_id, column.in_(chunk))
        out.update(s.scalars(q))
    return out


def _chunks(ids: Iterable[int]) -> Iterable[list[int]]:
    ids = sorted(ids)
    return (ids[i : i + CHUNK] for i in range(0, len(ids), CHUNK))


def _archive_targets(directory, tenant: str, external_id: str, targets: Targets) -> None:
    """The order's archived rows' ids, in dependency order (orders, records, events)."""
    rows = [
        (table, row)
        for day in archive.days(directory, tenant)
        for table, part in archive.read_day(directory, tenant, day)
        for row in part
    ]
    for table, row in rows:
        if table == "orders" and row.get("external_id") == external_id:
            targets.ids[ORDER].add(row["id"])
            targets.payloads.append(row.get("payload"))
    for table, link, of, into in (
        ("exception_records", "order_id", ORDER, RECORD),
        ("outbox_events", "record_id", RECORD, EVENT),
    ):
        targets.ids[into] |= {r["id"] for t, r in rows if t == table and r.get(link) in
                              targets.ids[of]}  # fmt: skip


def _scrub_table(
    s: Session, tenant_id: int, name: str, targets: Targets, known: re.Pattern[str] | None
) -> int:
    spec = PERSONAL_DATA[name]
    table = _table(name)
    if not spec.columns:
        return 0
    pk = list(table.primary_key.columns)
    # Columns with an onupdate default (updated_at) keep their value: erasure is no change.
    keep = {c.name: c for c in table.columns if c.onupdate is not None}
    scrubbed = 0
    for chunk in _chunks(targets.ids[spec.of]):
        q = select(*pk, *(table.c[c] for c in spec.columns)).where(
            table.c.tenant_id == tenant_id, table.c[spec.link].in_(chunk)
        )
        for row in s.execute(q).mappings().all():
            changes = scrub_row(name, row, known)
            if changes:
                where = [c == row[c.name] for c in pk]
                s.execute(update(table).where(*where).values(**changes, **keep))
                scrubbed += 1
    return scrubbed


def _edit(
    table: str, row: dict[str, Any], targets: Targets, known: re.Pattern[str] | None
) -> dict[str, Any] | None:
    if not targets.owns(table, row):
        return None
    changes = scrub_row(table, row, known)
    return {**row, **changes} if changes else None
