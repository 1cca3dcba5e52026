"""Time partitions of the append-only history on PostgreSQL: which tables, their grain, the
partitions that exist, and making the next ones ahead of time (retire.py drops old ones).

`enrichment_attempts` and `outbox_events` are partitioned by week of `created_at`,
`metric_snapshots` by month of `taken_at` (migration 0021; UTC bounds, Monday weeks). Why
weeks: a partition goes only once its newest row is past the table's longest retention (180
days for failed attempts, 90 for dead events by default), so the grain only decides how long
past that a row may stay (a week at most) and how many partitions a lookup that does not
filter on time (by record, by id, the pull feed's tx) must visit: about 27 and 14 weekly
ones with the defaults, where daily ones would be 180 and 90. Snapshots keep 30 days and are
few: by month. Each table has a DEFAULT partition so an insert never fails; the row pruner
(pruner.py) handles what lands in it.

The fleet makes its own partitions, `AHEAD` grains past the current one: beat's
`enrichment.partitions` task, `enrichment migrate`, and each worker at start-up call
`make_ahead`. It needs no extension (pg_partman is not on every managed PostgreSQL). SQLite
keeps plain tables: everything here is a no-op there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from enrichment.core import db

log = structlog.get_logger(__name__)

WEEK, MONTH = "week", "month"
LOCK_KEY = 0x656E7270  # "enrp": one run of make_ahead / retire at a time (core.db.exclusive)
# How long a DDL statement here waits for its lock before giving up until the next run: it
# must never queue the claim's or the monitor's statements behind it for longer.
LOCK_TIMEOUT = "3s"


@dataclass(frozen=True)
class Layout:
    """One partitioned table: its time column, its grain, and partitions made ahead."""

    table: str
    column: str
    grain: str
    ahead: int

    def name(self, start: datetime) -> str:
        return f"{self.table}_p{start:{'%Y%m%d' if self.grain == WEEK else '%Y%m'}}"


LAYOUTS = (
    Layout("enrichment_attempts", "created_at", WEEK, 4),
    Layout("outbox_events", "created_at", WEEK, 4),
    Layout("metric_snapshots", "taken_at", MONTH, 2),
)


@dataclass(frozen=True)
class Partition:
    """One partition; `lower`/`upper` None for the DEFAULT partition."""

    name: str
    lower: datetime | None
    upper: datetime | None

    @property
    def is_default(self) -> bool:
        return self.lower is None


def floor(grain: str, at: datetime) -> datetime:
    """The start (UTC) of the week (Monday) or month holding `at`."""
    day = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday()) if grain == WEEK else day.replace(day=1)


def following(grain: str, start: datetime) -> datetime:
    """The start of the next week or month after the one starting at `start`."""
    return (
        start + timedelta(days=7) if grain == WEEK else (start + timedelta(days=32)).replace(day=1)
    )


def is_partitioned(conn: Connection, table: str) -> bool:
    """True on PostgreSQL once migration 0021 made `table` a partitioned table."""
    if conn.dialect.name != "postgresql":
        return False
    q = text("SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass(:t)")
    return bool(conn.execute(q, {"t": table}).scalar())


_BOUND = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")


def partitions(conn: Connection, layout: Layout) -> list[Partition]:
    """The table's partitions, oldest first, the DEFAULT one last."""
    q = text(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(:t)"
    )
    found = []
    for name, bound in conn.execute(q, {"t": layout.table}):
        if bound is None:  # being detached by a transaction not yet committed
            continue
        m = _BOUND.search(bound)
        lower, upper = (_ts(m.group(1)), _ts(m.group(2))) if m else (None, None)
        found.append(Partition(name, lower, upper))
    return sorted(
        found, key=lambda p: (p.lower is None, p.lower or datetime.min.replace(tzinfo=UTC))
    )


def _ts(literal: str) -> datetime:
    """A bound as pg_get_expr prints it ('2026-12-07 00:00:00+00', in the session's zone)."""
    at = datetime.fromisoformat(literal)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def make_ahead(engine: Engine, *, now: datetime | None = None) -> list[str]:
    """Make the current partition and `ahead` more for each table that lacks them; the
    names made. Rows the DEFAULT partition holds for a new range move into it (a fleet that
    was down past its partitions). One that cannot be made (a lock timeout, a partition made
    by hand in the way) is logged, `partitions.not_made`, and the others are made: the next
    run tries again. A no-op on SQLite and before migration 0021."""
    now = now or datetime.now(UTC)
    made = []
    for layout in LAYOUTS:
        with engine.connect() as conn:
            if not is_partitioned(conn, layout.table):
                continue
            have = {p.lower for p in partitions(conn, layout)}
        start = floor(layout.grain, now)
        for _ in range(layout.ahead + 1):
            if start not in have and _made(engine, layout, start):
                made.append(layout.name(start))
            start = following(layout.grain, start)
    if made:
        log.info("partitions.made", partitions=made)
    return made


def ensure(engine: Engine, *, now: datetime | None = None) -> list[str]:
    """`make_ahead`, once across the fleet (an advisory lock: workers starting together do
    not race); the names made."""
    with db.exclusive(engine, LOCK_KEY) as mine:
        return make_ahead(engine, now=now) if mine else []


def _made(engine: Engine, layout: Layout, start: datetime) -> bool:
    try:
        with engine.begin() as conn:
            _make(conn, layout, start)
        return True
    except DBAPIError as exc:
        error = str(exc.orig).splitlines()[0]
        log.warning("partitions.not_made", partition=layout.name(start), error=error)
        return False


def _make(conn: Connection, layout: Layout, start: datetime) -> None:
    """One partition, made apart and attached: ATTACH takes SHARE UPDATE EXCLUSIVE on the
    parent (CREATE ... PARTITION OF would take ACCESS EXCLUSIVE), and lets the DEFAULT
    partition's rows of the range move in first (else the attach would fail on them)."""
    t, col, name = layout.table, layout.column, layout.name(start)
    end = following(layout.grain, start)
    conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    conn.execute(text(f"CREATE TABLE {name} (LIKE {t} INCLUDING DEFAULTS)"))
    span = {"lo": start, "hi": end}
    conn.execute(
        text(f"WITH moved AS (DELETE FROM {t}_default WHERE {col} >= :lo AND {col} < :hi"
             f" RETURNING *) INSERT INTO {name} SELECT * FROM moved"),
        span,
    )  # fmt: skip
    bounds = f"FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
    conn.execute(text(f"ALTER TABLE {t} ATTACH PARTITION {name} FOR VALUES {bounds}"))
