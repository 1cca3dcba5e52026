"""Retention by whole partitions on PostgreSQL: a partition goes once all of it is past the
table's longest retention, archived first when there is an archive directory.

The longest retention is the largest of the table's policies' days (history/retention.py:
attempts succeeded and failed; events delivered, dead and pulled; snapshots), over the
fleet's setting and every tenant's own; any 0 (forever) keeps the table's partitions. A
partition whose upper bound is older than that still stays while it holds a row no policy
lets go (an event pending for a webhook or stopped, a tenant's newest snapshot): the row
pruner removes the rest of it row by row meanwhile.

Per partition, in short transactions: check that it holds no row some policy keeps (else it
stays); with an archive directory, archive its rows and their dependents (an event's
delivery-log rows) by tenant and day in bounded chunks, each read in a transaction of its own
(retire_archive.py: the range gets no more writes; a crash loses nothing, a second run goes
on from the last chunk recorded); count its rows per tenant; then one short transaction
deletes the dependents, adds the counts to `prune_counts`, DETACHes and DROPs.
DETACH ... CONCURRENTLY cannot be used while a DEFAULT partition exists (PostgreSQL refuses
it), so the plain DETACH takes ACCESS EXCLUSIVE on the parent, a catalog change held only to
the commit, under `lock_timeout`: when the claim or the monitor holds the table, the run
gives up on that partition and the next one tries again (its archive is then complete, and
the next run's check finds nothing more to write; readers keep one row per id).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog
from sqlalchemy import Connection, Engine, Table, func, not_, or_, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from enrichment.core import prune_counts
from enrichment.core.models import Tenant
from enrichment.core.settings_retention import RetentionConfig
from enrichment.core.tenant_settings import TenantSettings
from enrichment.history import retire_archive
from enrichment.history.partitions import LAYOUTS, LOCK_TIMEOUT, Layout, Partition, partitions
from enrichment.history.partitions import is_partitioned as _is_partitioned
from enrichment.history.retention import POLICIES, Policy, cutoff, days_for

log = structlog.get_logger(__name__)

RowCutoff = Callable[[Policy, TenantSettings, datetime], datetime]


@dataclass
class Retired:
    """Partitions dropped, kept past their table's retention (and why), rows per table."""

    dropped: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)
    removed: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class _Pass:
    """What one retiring pass shares: the database, tenants (id -> name, settings), the
    archive and its chunk size, the clock, and what it did."""

    engine: Engine
    tenants: dict[int, tuple[str, TenantSettings]]
    archive_dir: Path | None
    chunk_rows: int
    now: datetime
    out: Retired


def retire(
    engine: Engine,
    config: RetentionConfig,
    *,
    now: datetime | None = None,
    archive_dir: str | Path | None = None,
    chunk_rows: int = retire_archive.CHUNK_ROWS,
) -> Retired:
    """Drop (archiving first, `chunk_rows` rows a chunk, with `archive_dir`) every partition
    wholly past retention."""
    now = now or datetime.now(UTC)
    with engine.connect() as conn:
        tenants = {
            i: (n, TenantSettings.parse(s))
            for i, n, s in conn.execute(select(Tenant.id, Tenant.name, Tenant.settings))
        }
        todo = [(lay, p) for lay in LAYOUTS if _is_partitioned(conn, lay.table)
                for p in partitions(conn, lay)]  # fmt: skip
    directory = Path(archive_dir) if archive_dir else None
    run = _Pass(engine, tenants, directory, chunk_rows, now, Retired())
    owners = {lay.table: _policies(lay) for lay in LAYOUTS}
    for layout, part in todo:
        before = oldest_cutoff(owners[layout.table], config, [o for _, o in tenants.values()], now)
        if part.is_default or before is None or part.upper > before:
            continue
        _retire_one(run, layout, part, owners[layout.table])
    out = run.out
    if out.dropped or out.kept:
        log.info("partitions.retired", dropped=out.dropped, kept=out.kept, **out.removed)
    return out


def _policies(layout: Layout) -> tuple[Policy, ...]:
    return tuple(p for p in POLICIES if p.table.name == layout.table)


def oldest_cutoff(
    policies: tuple[Policy, ...], config: RetentionConfig, tenants: list[TenantSettings], now
) -> datetime | None:
    """The earliest cutoff of the table's policies over the fleet and every tenant: what is
    older is past every retention. None: some of it is kept forever."""
    cutoffs = [
        cutoff(p, config, own, now)
        for p in policies
        for own in [TenantSettings.parse(None), *tenants]
    ]
    return None if not cutoffs or None in cutoffs else min(cutoffs)


def _longest_days(
    policies: tuple[Policy, ...], config: RetentionConfig, tenants: list[TenantSettings]
) -> int | None:
    """The most days any tenant (or the fleet) keeps a kind of the table; None: forever."""
    everyone = [TenantSettings.parse(None), *tenants]
    days = [days_for(p.kind, config, own) for p in policies for own in everyone]
    return None if not days or 0 in days else max(days)


def row_cutoffs(conn: Connection, config: RetentionConfig) -> RowCutoff:
    """For the row pruner (pruner.py), once a pass: the cutoff it should use for a policy.

    A kind kept as long as its table's longest retention leaves the rows in the table's
    ranged partitions to `retire` (whole partitions, at most one grain later, instead of a
    DELETE per row): its cutoff is pulled back to the oldest ranged partition's lower bound,
    so the pruner still removes what the DEFAULT partition holds from before every range.
    A kind kept shorter (a short retention, or a tenant keeping less than another) is pruned
    by rows as before: dropping waits for the longest."""
    tenants = [TenantSettings.parse(c) for c in conn.execute(select(Tenant.settings)).scalars()]
    oldest: dict[str, tuple[int, datetime]] = {}
    for layout in LAYOUTS:
        if not _is_partitioned(conn, layout.table):
            continue
        ranged = [p.lower for p in partitions(conn, layout) if not p.is_default]
        longest = _longest_days(_policies(layout), config, tenants)
        if ranged and longest:
            oldest[layout.table] = (longest, ranged[0])

    def cutoff_for(policy: Policy, own: TenantSettings, before: datetime) -> datetime:
        found = oldest.get(policy.table.name)
        if found is None or days_for(policy.kind, config, own) != found[0]:
            return before
        return min(before, found[1])

    return cutoff_for


def _retire_one(run: _Pass, layout: Layout, part: Partition, policies: tuple[Policy, ...]):
    """Archive (chunk by chunk, with an archive directory), then count, DETACH and DROP."""
    table = policies[0].table
    span = (table.c[layout.column] >= part.lower) & (table.c[layout.column] < part.upper)
    kept = _read(run, select(func.count()).select_from(table)
                   .where(span, not_(or_(*(p.state() for p in policies)))))  # fmt: skip
    if kept:
        run.out.kept[part.name] = f"{kept} rows still kept (referenced or undelivered)"
        return
    deps = list({dep.name: (dep, col) for p in policies for dep, col in p.dependents}.values())
    if run.archive_dir is not None:
        source = retire_archive.Source(part.name, table, table.c[layout.column], span)
        names = {i: name for i, (name, _own) in run.tenants.items()}
        retire_archive.archive_partition(run.engine, source, deps, directory=run.archive_dir,
                                         tenants=names, chunk_rows=run.chunk_rows)  # fmt: skip
    # The range gets no more rows: counted apart, before the short transaction that drops it.
    count = select(table.c.tenant_id, func.count()).where(span).group_by(table.c.tenant_id)
    per_tenant = _read(run, count, all_rows=True)
    try:
        with run.engine.begin() as conn:
            removed = _remove(conn, table, span, deps, per_tenant, now=run.now)
            conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            conn.execute(text(f"ALTER TABLE {layout.table} DETACH PARTITION {part.name}"))
            conn.execute(text(f"DROP TABLE {part.name}"))
    except OperationalError as exc:  # lock_timeout: the table was busy; the next run retries
        log.warning("partitions.busy", partition=part.name, error=str(exc.orig).splitlines()[0])
        run.out.kept[part.name] = "busy (lock timeout): the next run tries again"
        return
    if run.archive_dir is not None:
        retire_archive.finished(run.archive_dir, part.name)
    run.out.dropped.append(part.name)
    run.out.removed.update(removed)


def _read(run: _Pass, stmt, *, all_rows: bool = False):
    """One read in a short transaction of its own: the first value, or every row."""
    with run.engine.connect() as conn:
        return conn.execute(stmt).all() if all_rows else conn.scalar(stmt)


def _remove(conn: Connection, table: Table, span, deps, per_tenant, *, now) -> Counter:
    """Delete the dependents and count them and the partition's rows per tenant."""
    ids = select(table.c.id).where(span)
    removed: Counter[str] = Counter()
    for dep, col in deps:
        stmt = dep.delete().where(dep.c[col].in_(ids)).returning(dep.c.tenant_id)
        for tenant_id, n in Counter(conn.execute(stmt).scalars()).items():
            _count(conn, tenant_id, dep.name, n, now=now)
            removed[dep.name] += n
    for tenant_id, n in per_tenant:
        _count(conn, tenant_id, table.name, n, now=now)
        removed[table.name] += n
    return removed


def _count(conn: Connection, tenant_id: int, table_name: str, n: int, *, now) -> None:
    with Session(bind=conn) as s:  # joins the connection's transaction, commits nothing
        prune_counts.add(s, tenant_id, table_name, n, now=now)
