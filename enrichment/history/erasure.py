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

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, timedelta
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


def _no_ids() -> dict[str, set[int]]:
    return {ORDER: set(), RECORD: set(), EVENT: set()}


@dataclass
class Targets:
    """The ids of the order's rows: the order, its records, their outbox events."""

    ids: dict[str, set[int]] = field(default_factory=_no_ids)
    payloads: list[Any] = field(default_factory=list)
    since: date | None = None  # the order's creation day, when the database has the order

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
        edit = functools.partial(_edit, targets=targets, known=known)
        archives = archive.rewrite(archive_dir, tenant, edit, since=targets.since)
    return Erased(database, archives)


def _database_targets(s: Session, tenant_id: int, external_id: str) -> Targets:
    orders, records, events = (_table(n) for n in ("orders", "exception_records", "outbox_events"))
    targets = Targets()
    found = s.execute(
        select(orders.c.id, orders.c.payload, orders.c.created_at).where(
            orders.c.tenant_id == tenant_id, orders.c.external_id == external_id
        )
    ).all()
    for order_id, payload, created_at in found:
        targets.ids[ORDER].add(order_id)
        targets.payloads.append(payload)
        # Nothing of the order's is older than the order: earlier archived days are skipped
        # (a day's margin for the clocks of the hosts that stamped its rows).
        targets.since = created_at.astimezone(UTC).date() - timedelta(days=1)
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
    """Add the order's archived rows' ids: the order's, its records', their events'. Only
    (id, link) pairs are kept while reading, whatever the archive's size."""
    links: dict[str, list[tuple[Any, Any]]] = {"exception_records": [], "outbox_events": []}
    for day in archive.days(directory, tenant, since=targets.since):
        for table, rows in archive.read_day(directory, tenant, day):
            for row in rows:
                if table == "orders" and row.get("external_id") == external_id:
                    targets.ids[ORDER].add(row["id"])
                    targets.payloads.append(row.get("payload"))
                elif table in links:
                    link = row.get("order_id" if table == "exception_records" else "record_id")
                    links[table].append((row.get("id"), link))
    records = {i for i, order in links["exception_records"] if order in targets.ids[ORDER]}
    targets.ids[RECORD] |= records
    targets.ids[EVENT] |= {i for i, r in links["outbox_events"] if r in targets.ids[RECORD]}


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
    table: str, row: dict[str, Any], *, targets: Targets, known: re.Pattern[str] | None
) -> dict[str, Any] | None:
    if not targets.owns(table, row):
        return None
    changes = scrub_row(table, row, known)
    return {**row, **changes} if changes else None
