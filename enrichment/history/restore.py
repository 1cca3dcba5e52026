"""An archive read back into the database: `enrichment archive restore TENANT DAY`.

Every part of the day (or of one table) is read and its checksum checked before any row is
written: a corrupted part refuses the whole restore. Then each row whose primary key is not
in its table is inserted with its archived values (ids included, so what referred to it
still does); a row already there is left alone, so restoring twice changes nothing. Tables
go parents first (records before their attempts). Values come back by the column's type
(an ISO 8601 text to a datetime, ...); an archived column the table no longer has is left
out. Every row must be the tenant's: an archive of another tenant (or of a tenant removed
and created again, with a new id) is refused.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Table, TypeDecorator, insert, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from enrichment.core import (  # noqa: F401 (their tables join Base.metadata, as in migrations)
    audit,
    batch_models,
    breaker_store,
    calibration_maps,
    delivery_log,
    monitor_models,
    review_claims,
    review_sessions,
    reviewers,
    shadow_answers,
)
from enrichment.core.models import Base
from enrichment.history import archive

CHUNK = 500


@dataclass(frozen=True)
class Restored:
    table: str
    archived: int  # rows in the archive
    inserted: int  # rows that were missing and are back


def _from_json(column: Column, value: Any) -> Any:
    if value is None:
        return None
    sql_type = column.type
    if isinstance(sql_type, TypeDecorator):  # UTCDateTime: its impl says what it holds
        sql_type = sql_type.impl_instance
    try:
        kind = sql_type.python_type
    except NotImplementedError:
        return value
    if kind is datetime:
        return datetime.fromisoformat(value)
    if kind is date:
        return date.fromisoformat(value)
    if kind is Decimal:
        return Decimal(value)
    if kind is bytes:
        return base64.b64decode(value)
    if kind is uuid.UUID:
        return uuid.UUID(value)
    return value


def typed_row(table: Table, row: dict[str, Any]) -> dict[str, Any]:
    """An archived row as the table's column types want it (unknown columns left out)."""
    return {c.name: _from_json(c, row[c.name]) for c in table.columns if c.name in row}


def read(
    directory: str | Path, tenant: str, day: date, *, table: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """The day's archived rows per table, checksums checked, parents first."""
    by_table: dict[str, list[dict[str, Any]]] = {}
    for name, rows in archive.read_day(directory, tenant, day, table=table):
        if name not in Base.metadata.tables:
            raise archive.ArchiveError(f"the archive holds rows of an unknown table {name!r}")
        by_table.setdefault(name, []).extend(rows)
    if table is not None and not by_table:
        raise archive.ArchiveError(f"no {table} rows archived for {tenant} on {day}")
    order = [t.name for t in Base.metadata.sorted_tables]
    return {name: by_table[name] for name in sorted(by_table, key=order.index)}


def restore(
    s: Session, tenant_id: int, rows_by_table: dict[str, list[dict[str, Any]]]
) -> list[Restored]:
    """Insert the rows that are missing; the caller commits."""
    out = []
    for name, rows in rows_by_table.items():
        table = Base.metadata.tables[name]
        typed = [typed_row(table, r) for r in rows]
        foreign = {r.get("tenant_id") for r in typed} - {tenant_id}
        if foreign:
            raise archive.ArchiveError(
                f"{name} rows in the archive belong to tenant id {sorted(foreign)[0]}, not"
                f" this tenant's ({tenant_id}): refusing to restore them here"
            )
        out.append(Restored(name, len(rows), _insert_missing(s, table, typed)))
    return out


def _insert_missing(s: Session, table: Table, rows: list[dict[str, Any]]) -> int:
    pk = list(table.primary_key.columns)
    key = tuple_(*pk)
    unique: dict[tuple, dict[str, Any]] = {}
    for r in rows:  # a row archived twice (a pruner's crash) counts once: the first
        unique.setdefault(tuple(r[c.name] for c in pk), r)
    inserted = 0
    keys = list(unique)
    for i in range(0, len(keys), CHUNK):
        chunk = keys[i : i + CHUNK]
        present = set(map(tuple, s.execute(select(*pk).where(key.in_(chunk))).all()))
        missing = [unique[k] for k in chunk if k not in present]
        if missing:
            try:
                with s.begin_nested():
                    s.execute(insert(table), missing)
            except IntegrityError as exc:
                reason = str(exc.orig).splitlines()[0][:200]
                raise archive.ArchiveError(
                    f"{table.name}: the database refused an archived row ({reason}); restore"
                    " what it refers to first, or create its partition"
                ) from None
            inserted += len(missing)
    return inserted
