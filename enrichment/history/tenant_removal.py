"""Removing a tenant entirely: `enrichment erase TENANT --all` (issue 26).

Every table of the database with a `tenant_id` column loses the tenant's rows (read from the
database itself, so a table added later is covered without a list to keep), children before
parents, then the tenant's own row goes, and its archive folder is deleted. One transaction:
all or nothing.

The audit log is append-only (a trigger refuses UPDATE and DELETE, migration 0009). Removing
a tenant is the one exception, and it is made inside this transaction only:
- PostgreSQL: the trigger lets a DELETE through when the transaction-local setting
  `enrichment.erasing` is 'tenant' (migration 0020); `set_config(..., true)` sets it for
  this transaction alone. UPDATE is still refused, always.
- SQLite (no settings): the DELETE trigger is dropped and created again inside the same
  transaction (SQLite's DDL is transactional), so no other writer ever sees it missing.
No audit row can record the removal (its tenant is gone): the command prints what it removed
and logs it (`tenant.erased`), for the operator's own records.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, MetaData, delete, text
from sqlalchemy.orm import Session

from enrichment.history import archive

ERASING_SETTING = "enrichment.erasing"
# Kept by triggers on exception_records (migration 0024): emptied after the records, whose
# deletion appends to them.
DERIVED = ("record_tallies", "record_tally_deltas")
# Migration 0009's SQLite trigger, created again after the tenant's rows are gone (a
# migration is history: this copy must stay the same as that text).
APPEND_ONLY = "audit_log is append-only: its rows cannot be changed or deleted"
SQLITE_TRIGGER = (
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
    f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
)


def remove_tenant(
    s: Session, tenant_id: int, tenant: str, *, archive_dir: str | Path | None
) -> dict[str, int]:
    """Delete the tenant's rows everywhere and its archives; rows removed per table (and
    `archive files`). The caller commits."""
    conn = s.connection()
    removed: dict[str, int] = {}
    with _audit_deletable(conn):
        for table in _owned_tables(conn):
            n = conn.execute(delete(table).where(table.c.tenant_id == tenant_id)).rowcount
            if n:
                removed[table.name] = n
    removed["tenants"] = conn.execute(
        text("DELETE FROM tenants WHERE id = :id"), {"id": tenant_id}
    ).rowcount
    if archive_dir is not None:
        removed["archive files"] = _remove_archives(archive_dir, tenant)
    return removed


def _owned_tables(conn: Connection) -> list:
    """Tables with a tenant_id, children first (PostgreSQL partitions through their parent)."""
    meta = MetaData()
    meta.reflect(bind=conn)
    partitions: set[str] = set()
    if conn.dialect.name == "postgresql":
        q = "SELECT relname FROM pg_class WHERE relispartition"
        partitions = set(conn.execute(text(q)).scalars())
    owned = [
        t
        for t in reversed(meta.sorted_tables)
        if "tenant_id" in t.c and t.name != "tenants" and t.name not in partitions
    ]
    return sorted(owned, key=lambda t: t.name in DERIVED)  # stable: the order kept otherwise


@contextmanager
def _audit_deletable(conn: Connection) -> Iterator[None]:
    """Inside: the tenant's audit rows may be deleted, in this transaction only. (After an
    error the transaction rolls back whole, the setting or the dropped trigger with it.)"""
    pg = conn.dialect.name == "postgresql"
    if pg:
        conn.execute(text(f"SELECT set_config('{ERASING_SETTING}', 'tenant', true)"))
    else:
        conn.execute(text("DROP TRIGGER audit_log_no_delete"))
    yield
    if pg:
        conn.execute(text(f"SELECT set_config('{ERASING_SETTING}', '', true)"))
    else:
        conn.execute(text(SQLITE_TRIGGER))


def _remove_archives(directory: str | Path, tenant: str) -> int:
    folder = archive.tenant_dir(directory, tenant)
    if not folder.is_dir():
        return 0
    count = sum(1 for p in folder.rglob("*.jsonl.gz"))
    shutil.rmtree(folder)
    return count
