"""The record tallies (migration 0024): each tenant's records counted by key, kept on
PostgreSQL as records change, so that a count over a tenant's whole history reads a few
hundred rows (the monitor's record counts, metrics/tallied.py; the backlog route; the review
queue's size).

Triggers on exception_records append +n / -n rows to `record_tally_deltas` (INSERT and
DELETE per statement, UPDATE per row when the key changed); the monitor folds a tenant's
deltas into `record_tallies` under its lock of the tenant row (`fold`); a reader sums both
in one statement (`tally_rows`), so it never sees a fold half done. The key: record type;
enriched, escalated, reviewed, queued for review, decided by a person, analysed, raised by
the order analysis, attached; the retry count; the confidence's tenth and hundredth.
SQLite keeps no tallies: its readers scan.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sqlalchemy import Row, func, select, text, union_all
from sqlalchemy.orm import Session

from enrichment.core.monitor_models import RecordTally, RecordTallyDelta

KEY = (
    "record_type",
    "enriched",
    "escalated",
    "reviewed",
    "queued",
    "human",
    "analysed",
    "raised",
    "attached",
    "retries",
    "decile",
    "cent",
)
_COLUMNS = ", ".join(("tenant_id", *KEY))
_FOLD = text(f"""
WITH moved AS (DELETE FROM record_tally_deltas WHERE tenant_id = :t RETURNING {_COLUMNS}, n),
kept AS (
  DELETE FROM record_tallies WHERE tenant_id = :t AND EXISTS (SELECT 1 FROM moved)
  RETURNING {_COLUMNS}, n
)
INSERT INTO record_tallies ({_COLUMNS}, n)
SELECT {_COLUMNS}, sum(n) FROM (SELECT * FROM moved UNION ALL SELECT * FROM kept) both_
GROUP BY {_COLUMNS} HAVING sum(n) <> 0
""")


def kept(session: Session) -> bool:
    """Whether this database keeps tallies (PostgreSQL: migration 0024's triggers)."""
    return session.get_bind().dialect.name == "postgresql"


def fold(session: Session, tenant_id: int) -> None:
    """Fold the tenant's deltas into its tallies, one statement (nothing is rewritten when
    there are none). The caller holds the tenant row's lock, as the monitor's run does; a
    concurrent fold would still leave every count right."""
    session.execute(_FOLD, {"t": tenant_id})


def rebuild(session: Session) -> int:
    """Count every record again (after a bulk load with the triggers disabled); the records
    counted."""
    return int(session.scalar(text("SELECT record_tallies_rebuild()")))


def tally_rows(session: Session, tenant_id: int) -> list[Row]:
    """The tenant's counts by key: its tallies and its unfolded deltas, summed in one
    statement (one snapshot)."""

    def part(model: type[RecordTally] | type[RecordTallyDelta]):
        cols = [getattr(model, k).label(k) for k in KEY]
        return select(*cols, model.n.label("n")).where(model.tenant_id == tenant_id)

    both = union_all(part(RecordTally), part(RecordTallyDelta)).subquery()
    keys = [both.c[k] for k in KEY]
    total = func.sum(both.c.n)
    stmt = select(*keys, total.label("n")).group_by(*keys).having(total != 0)
    return list(session.execute(stmt))


def count(rows: Iterable[Row], keep: Callable[[Row], bool] = lambda r: True) -> int:
    """How many records the tally `rows` hold where `keep` (a row's key) is true."""
    return int(sum(r.n for r in rows if keep(r)))
