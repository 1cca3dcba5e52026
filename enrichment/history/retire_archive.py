"""A partition archived before it is retired (retire.py), in bounded chunks, each read in a
short transaction of its own.

At 1M records a day a weekly attempts partition holds ~21M rows; archiving it inside the
transaction that drops it held its locks and the database's xmin for about 50 minutes. The
partition's range is past retention, so the fleet no longer writes into it: reading it a chunk
at a time sees the rows one read would. Its rows go by primary key (keyset on (id, time
column)), `chunk_rows` at a time (CHUNK_ROWS, 10,000, by default), written as archive parts
by tenant and the UTC day of their time column; then each dependent table (an event's
delivery-log rows) goes the same way, in windows of its own ids, each row's parent probed in
the partition by primary key (the delivery log has no index on `event_id`: it is read whole,
once per events partition, instead of once per chunk).

Nothing is deleted here. After each chunk its last key is written beside the archive
(`{dir}/.retiring/{partition}.json`, with the partition's oid, so a partition made again
under the same name starts afresh), and a second run goes on from there. A crash leaves the
partition whole; one between a chunk's archive write and its progress write leaves that
chunk twice in the archive (restore keeps one row per primary key, history/restore.py).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Engine, Select, Table, select, text, tuple_

CHUNK_ROWS = 10_000  # rows read, archived and recorded at a time
PROGRESS_DIR = ".retiring"
Key = tuple[Any, ...]


@dataclass(frozen=True)
class Source:
    """The partition being archived: its table, time column and range (`span`)."""

    name: str
    table: Table
    at: ColumnElement
    span: ColumnElement[bool]


def archive_partition(
    engine: Engine,
    source: Source,
    dependents: Sequence[tuple[Table, str]],
    *,
    directory: Path,
    tenants: dict[int, str],
    chunk_rows: int = CHUNK_ROWS,
) -> None:
    """Archive the partition's rows, then its `dependents` (table, column naming the row's
    id), `chunk_rows` a chunk, going on from where an earlier run stopped."""
    oid = _oid(engine, source.name)
    progress = _load(directory, source.name, oid)
    walks = [(source.table.name, partial(_rows, source), _row_key)]
    walks += [(dep.name, partial(_window, source, dep, col), _dep_key) for dep, col in dependents]
    for table, page, key_of in walks:
        after = _key(progress.get(table))
        for rows in _pages(engine, page, after, key_of, chunk_rows):
            _write(directory, tenants, table, rows)
            progress[table] = list(key_of(rows[-1]))
            _save(directory, source.name, oid, progress)


def finished(directory: Path, name: str) -> None:
    """Forget the partition's progress once it is dropped."""
    _path(directory, name).unlink(missing_ok=True)


def _pages(
    engine: Engine, page: Callable[[Key | None, int], Select], after: Key | None, key_of, n: int
) -> Iterator[list]:
    """Pages of `n` rows after `after`, each read in a short transaction of its own; the
    last is shorter than `n` (or empty, not yielded)."""
    while True:
        with engine.connect() as conn:  # read only: the transaction ends (rolls back) here
            rows = conn.execute(page(after, n)).mappings().all()
        if rows:
            yield rows
        if len(rows) < n:
            return
        after = key_of(rows[-1])


def _row_key(row) -> Key:
    return (row["id"], row["_at"])


def _dep_key(row) -> Key:
    return (row["id"],)


def _rows(source: Source, after: Key | None, n: int) -> Select:
    t = source.table
    stmt = select(t, source.at.label("_at")).where(source.span)
    if after is not None:
        stmt = stmt.where(tuple_(t.c.id, source.at) > tuple_(*after))
    return stmt.order_by(t.c.id, source.at).limit(n)


def _window(source: Source, dep: Table, column: str, after: Key | None, n: int) -> Select:
    """The next `n` rows of `dep` by id, each with its parent's time when the parent is in
    the partition (else NULL: not this partition's, skipped)."""
    window = select(dep).order_by(dep.c.id).limit(n)
    if after is not None:
        window = window.where(dep.c.id > after[0])
    w = window.subquery()
    t = source.table
    # A probe of the partition's primary key per row: a join would read the partition whole
    # (a hash join) for every window.
    at = select(source.at).where(t.c.id == w.c[column], source.span).limit(1).scalar_subquery()
    return select(w, at.label("_at")).order_by(w.c.id)


def _write(directory: Path, tenants: dict[int, str], table: str, rows: list) -> None:
    """Write the page's rows that are the partition's as parts by tenant and UTC day."""
    from enrichment.history.archive import archive_rows  # its writer's dependencies, lazily

    parts: dict[tuple[int, date], list[dict]] = defaultdict(list)
    for row in rows:
        if row["_at"] is not None:  # NULL: a dependent whose parent is not in the partition
            day = row["_at"].astimezone(UTC).date()
            parts[(row["tenant_id"], day)].append({k: v for k, v in row.items() if k != "_at"})
    for (tenant_id, day), part in sorted(parts.items()):
        archive_rows(directory, tenants[tenant_id], table, day, part)


def _oid(engine: Engine, name: str) -> int:
    with engine.connect() as conn:
        return conn.scalar(text("SELECT CAST(CAST(:name AS regclass) AS oid)"), {"name": name})


def _path(directory: Path, name: str) -> Path:
    return Path(directory) / PROGRESS_DIR / f"{name}.json"


def _key(raw: list | None) -> Key | None:
    """A stored key: [id] or [id, ISO 8601 time]."""
    if raw is None:
        return None
    return (raw[0],) if len(raw) == 1 else (raw[0], datetime.fromisoformat(raw[1]))


def _load(directory: Path, name: str, oid: int) -> dict[str, list]:
    try:
        stored = json.loads(_path(directory, name).read_text())
    except FileNotFoundError:
        return {}
    return stored["after"] if stored.get("oid") == oid else {}


def _save(directory: Path, name: str, oid: int, after: dict[str, list]) -> None:
    """Replace the progress file atomically (temporary file, then rename)."""
    path = _path(directory, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"oid": oid, "after": after}, default=datetime.isoformat))
    os.replace(tmp, path)
