"""Partition the append-only history by time on PostgreSQL (issue 26): `enrichment_attempts`
and `outbox_events` by week of `created_at`, `metric_snapshots` by month of `taken_at`
(native RANGE partitions, UTC bounds), each with a DEFAULT partition so an insert never
fails. Retention then drops whole partitions (enrichment/history/partitions.py, which also
makes them ahead from now on). SQLite keeps its plain tables: a no-op there.

Each table is rebuilt in this migration's one transaction, on a populated database: the
index, constraint and trigger definitions are read from the catalog, the table is renamed
away, the partitioned table is made LIKE it (the same columns, defaults and so the same id
sequence, whose ownership moves to it), one partition per week (month) holding rows plus
the ones ahead, the rows copied, then the primary key - (id, time): a partitioned table's
unique keys must hold the partition key -, the indexes, the foreign keys and the triggers
made again by their old definitions and names, and the old table dropped. Downgrade is the
same rebuild the other way. The tables are locked (ACCESS EXCLUSIVE) throughout: stop the
fleet first (docs/operations.md, "Partitions", has the time it takes).

The layout is repeated here, not imported: a migration is a snapshot of what it did.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 23:30:00
"""

from datetime import UTC, datetime, timedelta

from alembic import op
from sqlalchemy import text

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

# table -> (time column, grain, partitions made ahead of the current one)
TABLES = {
    "enrichment_attempts": ("created_at", "week", 4),
    "outbox_events": ("created_at", "week", 4),
    "metric_snapshots": ("taken_at", "month", 2),
}
OLD = "{}_unpartitioned"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("SET LOCAL TimeZone = 'UTC'")
    for table, (column, grain, ahead) in TABLES.items():
        found = _rebuild(table, column, partitioned=True)
        _make_partitions(table, column, grain, ahead)
        _finish(table, column, found, partitioned=True)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("SET LOCAL TimeZone = 'UTC'")
    for table, (column, _grain, _ahead) in TABLES.items():
        found = _rebuild(table, column, partitioned=False)
        _finish(table, column, found, partitioned=False)


def _catalog(table: str) -> dict[str, list[str]]:
    """The definitions to make again: indexes (not the primary key), foreign keys, triggers."""
    conn = op.get_bind()
    q = {
        "indexes": "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i"
        " WHERE i.indrelid = CAST(:t AS regclass) AND NOT i.indisprimary",
        "fks": "SELECT format('ALTER TABLE %I ADD CONSTRAINT %I %s', CAST(:t AS text), conname,"
        " pg_get_constraintdef(oid)) FROM pg_constraint"
        " WHERE conrelid = CAST(:t AS regclass) AND contype = 'f'",
        "triggers": "SELECT pg_get_triggerdef(oid) FROM pg_trigger"
        " WHERE tgrelid = CAST(:t AS regclass) AND NOT tgisinternal",
    }
    # A partitioned table's index reads "ON ONLY t": made on the plain table, it is "ON t".
    return {
        k: [d.replace(" ON ONLY ", " ON ") for d in conn.execute(text(s), {"t": table}).scalars()]
        for k, s in q.items()
    }


def _rebuild(table: str, column: str, *, partitioned: bool) -> dict[str, list[str]]:
    """Rename `table` (and its index names) away, then make the new one LIKE it, empty; the
    old one's definitions (`_catalog`) to make again once the rows are in."""
    conn = op.get_bind()
    found = _catalog(table)
    old = OLD.format(table)
    op.execute(f"ALTER TABLE {table} RENAME TO {old}")
    op.execute(f"ALTER TABLE {old} RENAME CONSTRAINT pk_{table} TO pk_{old}")
    names = conn.execute(
        text("SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
             " WHERE i.indrelid = CAST(:t AS regclass) AND NOT i.indisprimary"),
        {"t": old},
    ).scalars()  # fmt: skip
    for name in list(names):
        op.execute(f"ALTER INDEX {name} RENAME TO {name[:50]}_old")
    by = f" PARTITION BY RANGE ({column})" if partitioned else ""
    op.execute(f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS){by}")
    # The id default names the old sequence: it moves over, or the old table's DROP drops it.
    q = text("SELECT pg_get_serial_sequence(CAST(:t AS text), 'id')")
    seq = conn.execute(q, {"t": old}).scalar()
    op.execute(f"ALTER SEQUENCE {seq} OWNED BY {table}.id")
    if partitioned:
        op.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")
    return found


def _finish(table: str, column: str, found: dict[str, list[str]], *, partitioned: bool) -> None:
    """Copy the rows, then the keys, indexes, foreign keys and triggers; drop the old table."""
    old = OLD.format(table)
    op.execute(f"INSERT INTO {table} SELECT * FROM {old}")
    key = f"id, {column}" if partitioned else "id"
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT pk_{table} PRIMARY KEY ({key})")
    for statement in found["indexes"] + found["fks"] + found["triggers"]:
        op.execute(statement)
    op.execute(f"DROP TABLE {old}")
    # Autovacuum analyzes the partitions, never a partitioned parent: plan on fresh figures.
    op.execute(f"ANALYZE {table}")


def _make_partitions(table: str, column: str, grain: str, ahead: int) -> None:
    """One partition per week (month) that holds rows, and the current one and `ahead` more."""
    old = OLD.format(table)
    starts = set(
        op.get_bind().execute(text(f"SELECT DISTINCT date_trunc('{grain}', {column}) FROM {old}"))
        .scalars()
    )  # fmt: skip
    start = _floor(grain, datetime.now(UTC))
    for _ in range(ahead + 1):
        starts.add(start)
        start = _next(grain, start)
    for start in sorted(starts):
        end = _next(grain, start)
        op.execute(
            f"CREATE TABLE {table}_p{start:{'%Y%m%d' if grain == 'week' else '%Y%m'}}"
            f" PARTITION OF {table} FOR VALUES FROM ('{start.isoformat()}')"
            f" TO ('{end.isoformat()}')"
        )


def _floor(grain: str, at: datetime) -> datetime:
    day = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if grain == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _next(grain: str, start: datetime) -> datetime:
    if grain == "week":
        return start + timedelta(days=7)
    return (start + timedelta(days=32)).replace(day=1)
