"""The pruner: removes what is past retention (retention.py), a bounded chunk at a time.

Each chunk is one short transaction: it picks at most ENRICHMENT_PRUNE_CHUNK_ROWS ids of
one tenant's rows of one kind, oldest first, locking them `FOR UPDATE SKIP LOCKED` on
PostgreSQL (a row another transaction holds is left for the next run, never waited on),
deletes the rows that go with them and then them, adds the count to `prune_counts` (read by
`/metrics`) and commits. The rows it removes are old and finished, rows the claim and the
monitor never lock, and it sleeps ENRICHMENT_PRUNE_PAUSE_S between chunks; a run stops after
ENRICHMENT_PRUNE_MAX_S and the next one goes on. One run at a time (an advisory lock,
LOCK_KEY, taken by its callers).

With an archive directory, each chunk's rows are written to the archive (grouped by tenant,
table and the UTC day of the row's time column) after its DELETEs and before its commit: if
the write fails the delete rolls back; if the process dies after the write and before the
commit, the rows are still in the database and the next run archives them again. So nothing
is ever lost, and a crash can leave a chunk twice in the archive (readers keep the first row
of an id).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, NamedTuple

import structlog
from sqlalchemy import Delete, Table, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from enrichment.core import prune_counts
from enrichment.core.models import Tenant, utcnow
from enrichment.core.settings_retention import RetentionConfig
from enrichment.core.tenant_settings import TenantSettings
from enrichment.history import retire
from enrichment.history.retention import POLICIES, Policy, cutoff, past

log = structlog.get_logger(__name__)

LOCK_KEY = 0x656E7278  # "enrx": one pruner at a time (core.db.exclusive)
# A chunk's rows on their way to the archive, by (table, UTC day).
Kept = dict[tuple[str, date], list[dict[str, Any]]]


@dataclass
class Report:
    """Rows removed (or, in a dry run, that would be) per table; `complete` is False when the
    run stopped at its time limit with more to do."""

    dry_run: bool
    removed: Counter[str] = field(default_factory=Counter)
    chunks: int = 0
    complete: bool = True


class Scope(NamedTuple):
    """One tenant's pass: who, and the settings that decide its cutoffs."""

    id: int
    name: str
    own: TenantSettings


@dataclass(frozen=True)
class Run:
    """What one pass needs besides the tenant: the pace, the archive and the clock."""

    config: RetentionConfig
    now: datetime
    archive_dir: Path | None
    deadline: float | None


def prune(
    sessions: sessionmaker[Session],
    config: RetentionConfig,
    *,
    tenant_id: int | None = None,
    dry_run: bool = False,
    archive_dir: str | Path | None = None,
    now: datetime | None = None,
    max_s: float | None = None,
) -> Report:
    """One pass over every tenant (or one): remove what is past retention, or only count it
    (`dry_run`). `max_s` bounds the pass (None: to the end); `archive_dir` archives first."""
    deadline = None if max_s is None else time.monotonic() + max_s
    run = Run(config, now or utcnow(), Path(archive_dir) if archive_dir else None, deadline)
    report = Report(dry_run=dry_run)
    with sessions() as s:  # PostgreSQL: what whole time partitions leave (retire.py)
        cutoff_for = retire.row_cutoffs(s.connection(), config)
    for scope in _tenants(sessions, tenant_id):
        for policy in POLICIES:
            before = cutoff(policy, config, scope.own, run.now)
            before = before and cutoff_for(policy, scope.own, before)
            if before is None or not _may_remove(policy, run, scope):
                continue
            if dry_run:
                with sessions() as s:
                    report.removed.update(count(s, policy, scope.id, before))
                continue
            removed, chunks, done = _drain(sessions, policy, scope, before, run)
            report.removed.update(removed)
            report.chunks += chunks
            if not done:
                report.complete = False
                return report
    return report


def _tenants(sessions: sessionmaker[Session], tenant_id: int | None) -> list[Scope]:
    stmt = select(Tenant.id, Tenant.name, Tenant.settings).order_by(Tenant.id)
    if tenant_id is not None:
        stmt = stmt.where(Tenant.id == tenant_id)
    with sessions() as s:
        return [Scope(i, name, TenantSettings.parse(cfg)) for i, name, cfg in s.execute(stmt)]


def _may_remove(policy: Policy, run: Run, scope: Scope) -> bool:
    """Records leave only through the archive (ENRICHMENT_RETENTION_RECORDS=archive)."""
    if policy.kind == "records" and run.archive_dir is None:
        log.warning("prune.records_kept", tenant=scope.name, reason="no ENRICHMENT_ARCHIVE_DIR")
        return False
    return True


def count(s: Session, policy: Policy, tenant_id: int, before: datetime) -> Counter[str]:
    """What one policy would remove now for one tenant, per table (its dependents too)."""
    ids = past(policy, tenant_id, before)
    found = Counter({policy.table.name: s.scalar(select(func.count()).select_from(ids.subquery()))})
    for dep, column in policy.dependents:
        stmt = select(func.count()).select_from(dep)
        found[dep.name] += s.scalar(
            stmt.where(dep.c.tenant_id == tenant_id, dep.c[column].in_(ids))
        )
    return +found  # without the zeros


def _drain(
    sessions: sessionmaker[Session], policy: Policy, scope: Scope, before: datetime, run: Run
) -> tuple[Counter[str], int, bool]:
    """Chunks until the policy has nothing left for the tenant or time is up: the rows
    removed per table, the chunks, and whether it got to the end."""
    total, chunks, since = Counter(), 0, None
    while True:
        try:
            with sessions.begin() as s:
                removed, since = chunk(s, policy, scope, (since, before), run)
        except IntegrityError:
            # A row was referred to between the pick and the delete (a new event for a record
            # being removed): the chunk rolled back whole; the next run decides again.
            log.warning("prune.chunk_referenced", tenant=scope.name, kind=policy.kind)
            return total, chunks, True
        total.update(removed)
        chunks += bool(removed)
        if removed.get(policy.table.name, 0) < run.config.prune_chunk_rows:
            return total, chunks, True
        if run.deadline is not None and time.monotonic() >= run.deadline:
            return total, chunks, False
        time.sleep(run.config.prune_pause_s)


def chunk(
    s: Session, policy: Policy, scope: Scope, window: tuple[datetime | None, datetime], run: Run
) -> tuple[Counter[str], datetime | None]:
    """Remove (archiving first, if asked) up to ENRICHMENT_PRUNE_CHUNK_ROWS of the tenant's
    rows past retention (time in `window`: since, before), oldest first, with their
    dependents, in the caller's transaction; the rows removed per table, and the time of the
    newest (the next chunk starts there: rows before it that stay, such as a reviewed record,
    are read once a pass, not once a chunk)."""
    t = policy.table
    since, before = window
    pick = past(policy, scope.id, before).add_columns(policy.time).order_by(policy.time)
    if since is not None:
        pick = pick.where(policy.time >= since)
    # SKIP LOCKED: a row someone holds is not waited for (PostgreSQL; SQLite has one writer).
    size = run.config.prune_chunk_rows
    picked = s.execute(pick.limit(size).with_for_update(skip_locked=True, of=t)).all()
    if not picked:
        return Counter(), since
    day_of = {row_id: at.date() for row_id, at in picked}
    ids = list(day_of)
    kept: Kept | None = None if run.archive_dir is None else defaultdict(list)
    removed = Counter()
    for dep, column in policy.dependents:
        stmt = delete(dep).where(dep.c.tenant_id == scope.id, dep.c[column].in_(ids))
        removed[dep.name] = _delete(s, stmt, dep, lambda r, c=column: day_of[r[c]], kept)
    stmt = delete(t).where(t.c.id.in_(ids))
    removed[t.name] = _delete(s, stmt, t, lambda r: day_of[r["id"]], kept)
    if kept is not None:
        _archive(run.archive_dir, scope.name, kept)
    for table_name, n in (+removed).items():
        prune_counts.add(s, scope.id, table_name, n, now=run.now)
    return +removed, picked[-1][1]


def _delete(
    s: Session, stmt: Delete, table: Table, day: Callable[[dict], date], kept: Kept | None
) -> int:
    """Run one DELETE; with an archive (`kept`), keep its rows by table and day."""
    if kept is None:
        return s.execute(stmt).rowcount
    rows = [dict(r._mapping) for r in s.execute(stmt.returning(*table.c))]
    for row in rows:
        kept[(table.name, day(row))].append(row)
    return len(rows)


def _archive(directory: Path, tenant: str, kept: Kept) -> None:
    from enrichment.history.archive import archive_rows  # its writer's dependencies, lazily

    for (table_name, day), rows in sorted(kept.items()):
        archive_rows(directory, tenant, table_name, day, rows)
