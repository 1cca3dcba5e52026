"""The time migration 0021 (time partitions) takes on a populated database, and a check that
it lost nothing (issue 26, docs/operations.md "Partitions (PostgreSQL)").

`python -m enrichment.tooling.bench.partition_migration --db-name NAME --attempts N` makes the
database NAME again (dropped first if it exists), migrates it to 0020, fills it inside
PostgreSQL (INSERT ... SELECT generate_series: no row crosses the wire) with 10 tenants, about
N/3 orders and records, N attempts (3 a record) and about N/3 outbox events (P3 at scale's mix,
`p3_scale_seed`, its records spread over the past `--days` days, 180 by default) and N/200
metric snapshots, VACUUM ANALYZEs it, then times `alembic upgrade 0021` (wall clock, and each
statement over `--slow-s` seconds) and compares each table's rows, largest id and an md5 of
its ids in order before and after. Prints one line of results, then one per table.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine

from enrichment.core import db
from enrichment.tooling.bench.common import NOTES, ORDER, Services, sql
from enrichment.tooling.bench.p3_scale_seed import (
    _ATTEMPTS,
    _EVENTS,
    _ORDERS,
    _RECORDS,
    _SECONDARY,
    _SEQUENCES,
    _TENANTS,
    ANALYSIS,
    build_indexes,
    vacuum_analyze,
)

TENANTS = 10
CHECKED = (
    "tenants",
    "orders",
    "exception_records",
    "enrichment_attempts",
    "outbox_events",
    "metric_snapshots",
)
LOADED = ("orders", "exception_records", "enrichment_attempts", "outbox_events")
PARTITIONED = ("enrichment_attempts", "outbox_events", "metric_snapshots")

# `n` snapshots `every_s` seconds apart back from now, of the tenant `{tenant}` names (a bind
# parameter or an expression of g); tests/test_partition_migration.py fills with it too.
SNAPSHOTS = """
INSERT INTO metric_snapshots (tenant_id, taken_at, window_s, total_records, enriched_records,
    backlog_records, escalated_records, classified_records, high_confidence_records,
    records_per_hour, processing_duration_s, window_attempts, window_failed_attempts,
    window_chains, window_ai_cost_usd, attempts_total, failed_attempts_total, ai_cost_usd_total,
    processing_seconds_total, confidence_buckets, integrity)
SELECT {tenant}, now() - make_interval(secs => g * :every_s), 300, g, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, '{{}}', '{{}}'
FROM generate_series(1, :n) g
"""
_FINGERPRINT = (
    "SELECT count(*), coalesce(max(id), 0),"
    " md5(coalesce(string_agg(id::text, ',' ORDER BY id), '')) FROM {}"
)


def server_url(host: str, port: int, name: str) -> str:
    """The SQLAlchemy URL of database `name` on the server at host:port."""
    return f"postgresql+psycopg://{host}:{port}/{name}"


def recreate(host: str, port: int, name: str, *, drop_only: bool = False) -> None:
    """Drop database `name` if it exists (closing its connections), then create it unless
    `drop_only`."""
    admin = create_engine(server_url(host, port, "postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if not drop_only:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


def fill(url: str, attempts: int, days: float = 180.0) -> dict[str, float]:
    """Fill a database at revision 0020 with `attempts` attempts and their history; the
    seconds each step took. Secondary indexes are dropped for the load, built after it."""
    services = Services(db_url=url, broker_url="", out_dir=Path("."))
    records = max(attempts // 3, 1)
    steps = [
        ("tenants", _TENANTS, {"tenants": TENANTS}),
        ("orders", _ORDERS, {"n": records, "payload": json.dumps(ORDER), "tenants": TENANTS,
                             "per_day": records / days}),  # fmt: skip
        ("records", _RECORDS, {"notes": NOTES, "analysis": json.dumps(ANALYSIS)}),
        ("attempts", _ATTEMPTS, {}),
        ("outbox_events", _EVENTS, {"n": records}),
        ("snapshots", SNAPSHOTS.format(tenant=f"1 + g % {TENANTS}"),
         {"n": max(attempts // 200, 1), "every_s": days * 86400 / max(attempts // 200, 1)}),
        ("sequences", _SEQUENCES, {"n": records, "tenants": TENANTS}),
    ]  # fmt: skip
    indexes = sql(services, _SECONDARY, tables=list(LOADED))
    for name, _ in indexes:
        sql(services, f'DROP INDEX "{name}"')
    took = {}
    for name, statement, params in steps:
        started = time.perf_counter()
        sql(services, statement, **params)
        took[name] = time.perf_counter() - started
    took["indexes"] = build_indexes(services, [d for _, d in indexes])
    took["vacuum_analyze"] = vacuum_analyze(services)
    return took


def fingerprint(url: str, tables: tuple[str, ...] = CHECKED) -> dict[str, tuple]:
    """Per table: rows, largest id, md5 of its ids in order (comma-joined text)."""
    engine = create_engine(url)
    with engine.connect() as conn:
        found = {t: tuple(conn.execute(text(_FINGERPRINT.format(t))).one()) for t in tables}
    engine.dispose()
    return found


def shape(url: str) -> dict[str, dict[str, int]]:
    """Per history table: total bytes (partitions summed) and partitions (DEFAULT included)."""
    q = (
        "SELECT sum(pg_total_relation_size(r)), count(*) - 1 FROM (SELECT CAST(:t AS regclass)"
        " AS r UNION SELECT relid FROM pg_partition_tree(CAST(:t AS regclass)) WHERE isleaf) x"
    )
    engine = create_engine(url)
    with engine.connect() as conn:
        found = {t: conn.execute(text(q), {"t": t}).one() for t in PARTITIONED}
    engine.dispose()
    return {t: {"bytes": int(b), "partitions": int(p)} for t, (b, p) in found.items()}


KINDS = (
    ("INSERT INTO", "copy"),
    ("PRIMARY KEY", "key"),
    ("FOREIGN KEY", "fks"),
    ("CREATE INDEX", "indexes"),
    ("CREATE UNIQUE INDEX", "indexes"),
    ("CREATE TRIGGER", "triggers"),
    ("ANALYZE", "analyze"),
)


def breakdown(statements: list[tuple[float, str]]) -> dict[str, dict[str, float]]:
    """Seconds per history table (the first one a statement names) and kind of statement:
    copy, key, indexes, fks, triggers, analyze, other (renames, partitions, the drop)."""
    found: dict[str, dict[str, float]] = {}
    for seconds, statement in statements:
        at = {statement.find(t): t for t in PARTITIONED if t in statement}
        table = at[min(at)] if at else "none"
        kind = next((k for word, k in KINDS if word in statement), "other")
        per = found.setdefault(table, {})
        per[kind] = per.get(kind, 0.0) + seconds
    return found


class StatementTimer:
    """Times each statement any engine runs while installed (seconds, wall clock)."""

    def __init__(self) -> None:
        self.took: list[tuple[float, str]] = []

    def _before(self, conn, _cursor, _statement, _params, _context, _many) -> None:
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def _after(self, conn, _cursor, statement, _params, _context, _many) -> None:
        started = conn.info["bench_started"].pop()
        self.took.append((time.perf_counter() - started, " ".join(statement.split())))

    def __enter__(self) -> StatementTimer:
        event.listen(Engine, "before_cursor_execute", self._before)
        event.listen(Engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *_exc) -> None:
        event.remove(Engine, "before_cursor_execute", self._before)
        event.remove(Engine, "after_cursor_execute", self._after)


def upgrade(url: str) -> tuple[float, list[tuple[float, str]], tuple[float, ...]]:
    """Run `alembic upgrade 0021`: wall seconds, each statement's seconds, and the load
    average (1 minute) before and (1, 5, 15 minutes) after."""
    from alembic import command

    load_before = os.getloadavg()[0]
    with StatementTimer() as timer:
        started = time.perf_counter()
        command.upgrade(db.alembic_config(url), "0021")
        seconds = time.perf_counter() - started
    return seconds, timer.took, (load_before, *os.getloadavg())


def run(url: str, attempts: int, days: float, slow_s: float) -> bool:
    """Migrate to 0020, fill, time 0021, print the results; whether nothing was lost."""
    from alembic import command

    command.upgrade(db.alembic_config(url), "0020")
    took = fill(url, attempts, days)
    print("fill_s", {k: round(v, 1) for k, v in took.items()}, flush=True)
    before, size = fingerprint(url), shape(url)
    seconds, statements, load = upgrade(url)
    after, parts = fingerprint(url), shape(url)
    same = before == after
    print(
        f"attempts={before['enrichment_attempts'][0]} events={before['outbox_events'][0]}"
        f" snapshots={before['metric_snapshots'][0]} records={before['exception_records'][0]}"
        f" attempts_mb={size['enrichment_attempts']['bytes'] / 1e6:.0f}"
        f" events_mb={size['outbox_events']['bytes'] / 1e6:.0f}"
        f" partitions={ {t: p['partitions'] for t, p in parts.items()} }"
        f" upgrade_s={seconds:.1f} load1_before={load[0]:.2f}"
        f" loadavg_after={load[1]:.2f},{load[2]:.2f},{load[3]:.2f}"
        f" lost_nothing={same}"
    )
    for table in CHECKED:
        ok = "ok" if before[table] == after[table] else "DIFFERS"
        print(f"  {table}: before={before[table]} after={after[table]} {ok}")
    for table, kinds in breakdown(statements).items():
        total = sum(kinds.values())
        print(f"  {table}: {total:.1f} s", {k: round(v, 1) for k, v in kinds.items()})
    for statement_s, statement in statements:
        if statement_s >= slow_s:
            print(f"  {statement_s:7.1f} s  {statement[:110]}")
    return same


def main(argv: list[str] | None = None) -> int:
    """Entry point; exit status 0 when every table's fingerprint held, 1 otherwise."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db-name", required=True, help="database to (re)create and fill")
    p.add_argument("--attempts", type=int, required=True, help="attempt rows (N)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5432)
    p.add_argument("--days", type=float, default=180.0, help="history's span, days (180)")
    p.add_argument("--slow-s", type=float, default=0.5, help="list statements this slow (0.5)")
    p.add_argument("--drop", action="store_true", help="drop the database when done")
    args = p.parse_args(argv)
    recreate(args.host, args.port, args.db_name)
    url = server_url(args.host, args.port, args.db_name)
    try:
        return 0 if run(url, args.attempts, args.days, args.slow_s) else 1
    finally:
        db.dispose_engines()
        if args.drop:
            recreate(args.host, args.port, args.db_name, drop_only=True)


if __name__ == "__main__":
    raise SystemExit(main())
