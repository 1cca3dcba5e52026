"""P3 query cost: the sweep's claim (enrichment.core.selection.claim_due) and the monitor's
per-tenant queries on `--p3-records` records across `--p3-tenants` tenants, timed, with
EXPLAIN (ANALYZE, BUFFERS) of the very SQL the code sent (captured from the engine, with its
real parameters). The claim is timed as a whole call (every statement it sends; target
< 50 ms), the monitor per statement (target < 1 s on its expected index).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from enrichment.tooling.bench.common import NOTES, ORDER, Options, Row, Services, reset_data, sql

log = structlog.get_logger(__name__)

_P3_TENANTS = """
INSERT INTO tenants (id, name, confidence_threshold, settings, created_at)
SELECT t, 'bench-' || t, 0.7, '{}', now() - interval '90 days' FROM generate_series(1, :tenants) t
"""
# Tenant 1 holds 40% of the records, tenants 2..N share the rest.
_P3_ORDERS = """
INSERT INTO orders (id, tenant_id, external_id, payload, events, created_at)
SELECT g, CASE WHEN g % 5 < 2 THEN 1 ELSE 2 + g % (:tenants - 1) END, 'o-' || g,
  CAST(:payload AS jsonb), '[]', now() - (g % 2592000) * interval '1 second'
FROM generate_series(1, :n) g
"""
# g % 100: 0-79 enriched, 80-83 escalated, 84-87 low confidence waiting for a recheck,
# 88-94 in backoff (15 min to 4 h ahead), 95-99 due now (one in ten of those leased).
_P3_RECORDS = """
INSERT INTO exception_records (id, tenant_id, order_id, external_id, reason_code, severity,
  status, notes, ai_label, ai_confidence, ai_source, enrichment_state, enrichment_retry_count,
  next_attempt_at, lease_token, lease_expires_at, enriched_at, escalated_at, created_at,
  updated_at)
SELECT o.id, o.tenant_id, o.id, 'e-' || o.id, 'DAMAGE', 'high', 'OPEN', :notes,
  CASE WHEN b < 80 THEN 'DAMAGED_PACKAGE' WHEN b BETWEEN 84 AND 87 THEN 'OTHER' END,
  CASE WHEN b < 80 THEN 0.85 WHEN b BETWEEN 84 AND 87 THEN 0.4 END,
  '{}', '{}',
  CASE WHEN b BETWEEN 80 AND 83 THEN 5 WHEN b BETWEEN 84 AND 94 THEN 1 + o.id % 4 ELSE 0 END,
  CASE WHEN b BETWEEN 84 AND 87 THEN now() + (1 + o.id % 24) * interval '1 hour'
       WHEN b BETWEEN 88 AND 94 THEN now() + (15 + o.id % 225) * interval '1 minute'
       WHEN b >= 95 THEN now() - (o.id % 3600) * interval '1 second'
       ELSE o.created_at END,
  CASE WHEN b >= 95 AND o.id % 10 = 0 THEN md5(o.id::text)::uuid::text END,
  CASE WHEN b >= 95 AND o.id % 10 = 0 THEN now() + interval '10 minutes' END,
  CASE WHEN b < 80 THEN o.created_at + interval '1 hour' END,
  CASE WHEN b BETWEEN 80 AND 83 THEN o.created_at + interval '2 hours' END,
  o.created_at, o.created_at
FROM (SELECT *, id % 100 AS b FROM orders) o
"""
_P3_ATTEMPTS = """
INSERT INTO enrichment_attempts (tenant_id, record_id, stage, outcome, latency_s, provider,
  model, prompt_version, input_tokens, output_tokens, cache_write_tokens, cache_read_tokens,
  cost_usd, lease_token, created_at)
SELECT tenant_id, id, 'classification', CASE WHEN id % 20 = 0 THEN 'failed' ELSE 'completed' END,
  0.8, 'anthropic', 'claude-haiku-4-5', 'v1', 500, 80, 0, 400, 0.001,
  md5(id::text)::uuid::text, now() - (id % 604800) * interval '1 second'
FROM exception_records
"""
_P3_SEQUENCES = """
SELECT setval(pg_get_serial_sequence('tenants', 'id'), :tenants),
       setval(pg_get_serial_sequence('orders', 'id'), :n),
       setval(pg_get_serial_sequence('exception_records', 'id'), :n)
"""
# Older snapshots, copied from the monitor's first real one: 12 a day for 30 days per tenant.
_P3_SNAPSHOTS = """
INSERT INTO metric_snapshots ({cols}, taken_at)
SELECT {cols}, taken_at - g * interval '2 hours'
FROM metric_snapshots, generate_series(1, 360) g
"""


def p3_seed(services: Services, n: int, tenants: int) -> None:
    steps = [
        ("tenants", _P3_TENANTS, {"tenants": tenants}),
        ("orders", _P3_ORDERS, {"n": n, "payload": json.dumps(ORDER), "tenants": tenants}),
        ("records", _P3_RECORDS, {"notes": NOTES}),
        ("attempts", _P3_ATTEMPTS, {}),
        ("sequences", _P3_SEQUENCES, {"n": n, "tenants": tenants}),
    ]
    for name, statement, params in steps:
        started = time.perf_counter()
        sql(services, statement, **params)
        log.info("bench.p3.seeded", table=name, seconds=round(time.perf_counter() - started, 1))


def p3_snapshots(services: Services) -> float:
    """One real monitor run (all tenants; its time is returned), then a month of history."""
    from enrichment.core import db
    from enrichment.core.monitor_models import MetricSnapshot
    from enrichment.core.settings import get_settings
    from enrichment.metrics import monitor

    started = time.perf_counter()
    monitor.run_monitor(db.session_factory(services.db_url), get_settings())
    elapsed = time.perf_counter() - started
    cols = ", ".join(
        c.name for c in MetricSnapshot.__table__.columns if c.name not in ("id", "taken_at")
    )
    sql(services, _P3_SNAPSHOTS.format(cols=cols))
    return elapsed


def vacuum(services: Services) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(services.db_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()


@dataclass
class Captured:
    statement: str
    parameters: Any
    seconds: float


class Capture:
    """Records every statement an engine sends, with its parameters and its wall time."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.engine, self.statements, self._t = engine, [], 0.0
        self._event = event
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, *_args: Any) -> None:
        self._t = time.perf_counter()

    def _after(self, _conn, _cursor, statement, parameters, _context, _many) -> None:
        self.statements.append(Captured(statement, parameters, time.perf_counter() - self._t))

    def close(self) -> None:
        self._event.remove(self.engine, "before_cursor_execute", self._before)
        self._event.remove(self.engine, "after_cursor_execute", self._after)


@contextmanager
def rolled_back(services: Services) -> Iterator[Any]:
    """A session whose transaction is always rolled back (claims leave no trace)."""
    from sqlalchemy.orm import Session

    from enrichment.core import db

    with db.get_engine(services.db_url).connect() as conn:
        trans = conn.begin()
        try:
            yield Session(bind=conn, join_transaction_mode="create_savepoint")
        finally:
            trans.rollback()


def p3_queries(services: Services) -> dict[str, Callable[[Any], None]]:
    """The measured calls: the real functions, each given a fresh rolled-back session."""
    from sqlalchemy import func, select

    from enrichment.core import selection
    from enrichment.core.models import ExceptionRecord, Tenant, utcnow
    from enrichment.core.settings import get_settings
    from enrichment.metrics import monitor

    settings = get_settings()
    config = settings.monitor
    with rolled_back(services) as s:
        big = s.scalar(
            select(ExceptionRecord.tenant_id)
            .group_by(ExceptionRecord.tenant_id)
            .order_by(func.count().desc())
            .limit(1)
        )

    def claim_all(s: Any) -> None:
        selection.claim_due(s, settings)

    def claim_tenant(s: Any) -> None:
        selection.claim_due(s, settings, tenant_id=big)

    def measure(s: Any) -> None:
        monitor.measure(s, s.get(Tenant, big), settings, config, now=utcnow())

    return {
        "claim_due (all tenants)": claim_all,
        f"claim_due (tenant {big})": claim_tenant,
        f"monitor.measure (tenant {big})": measure,
    }


# The monitor's statements, by the first marker each contains; the due-records pass is the
# one that reads sweep_stats (a scalar subquery), so its marker comes first.
_EXPECTED_INDEX = {
    "FROM metric_snapshots": "ix_metric_snapshots_tenant_taken",
    "FROM enrichment_attempts": "ix_enrichment_attempts_tenant_created",
    "FROM sweep_stats": "ix_exception_records_backlog",
    "FROM record_tallies": "ix_record_tallies_tenant_id",
    "FROM exception_records": "ix_exception_records_enriched",
}
_NAMES = {
    "FROM sweep_stats": "FROM exception_records (due now, sweep_stats)",
    "FROM exception_records": "FROM exception_records (the windows, the review queue's head)",
}
CLAIM_TARGET_S = 0.050


def _label(statement: str) -> str:
    for marker in _EXPECTED_INDEX:
        if marker in statement:
            return marker
    return statement.split()[0]


def explain(services: Services, captured: Captured) -> str:
    with rolled_back(services) as s:
        rows = (
            s.connection()
            .exec_driver_sql(
                "EXPLAIN (ANALYZE, BUFFERS) " + captured.statement, captured.parameters
            )
            .all()
        )
    return "\n".join(r[0] for r in rows)


def p3_measure(services: Services, name: str, call: Callable[[Any], None]) -> list[dict]:
    """Run `call` three times; per statement: the median wall time and the plan."""
    runs = [_captured_run(services, call) for _ in range(3)]
    results = []
    for i, first in enumerate(runs[0]):
        times = [run[i].seconds for run in runs if i < len(run)]
        plan = explain(services, first)
        label = _label(first.statement)
        index = _EXPECTED_INDEX.get(label, "")
        results.append(
            {
                "call": name,
                "statement": _NAMES.get(label, label),
                "median_s": statistics.median(times),
                "index": index,
                "index_used": bool(index) and index in plan,
                "plan": plan,
                "sql": first.statement,
            }
        )
    return results


def _captured_run(
    services: Services, call: Callable[[Any], None], *, every: bool = False
) -> list[Captured]:
    """One rolled-back run of `call`: the statements it sent that touch an expected index
    (`every`: all of them, the last entry being the whole call's wall time)."""
    from enrichment.core import db

    capture = Capture(db.get_engine(services.db_url))
    started = time.perf_counter()
    try:
        with rolled_back(services) as s:
            call(s)
    finally:
        capture.close()
    if every:  # SAVEPOINT and RELEASE are the rolled-back session's, not the call's
        sent = [
            c for c in capture.statements if not c.statement.startswith(("SAVEPOINT", "RELEASE"))
        ]
        return [*sent, Captured("(whole call)", None, time.perf_counter() - started)]
    return [c for c in capture.statements if _label(c.statement) in _EXPECTED_INDEX]


def p3_claim(services: Services, name: str, call: Callable[[Any], None]) -> list[dict]:
    """The claim as a whole: the median wall time of 3 calls, and every statement's plan."""
    runs = [_captured_run(services, call, every=True) for _ in range(3)]
    whole = statistics.median(run[-1].seconds for run in runs)
    statements = runs[0][:-1]
    plans = [explain(services, c) for c in statements]
    used = sorted({w for p in plans for w in p.split() if w.startswith(("ix_", "idx_", "pk_"))})
    text = [f"-- {c.statement}\n{p}" for c, p in zip(statements, plans, strict=True)]
    return [
        {
            "call": name,
            "statement": f"whole call, {len(statements)} statements",
            "median_s": whole,
            "index": ", ".join(used),
            "index_used": True,
            "claim": True,
            "plan": "\n\n".join(text),
            "sql": "",
        }
    ]


def bench_p3(services: Services, opts: Options) -> list[Row]:
    reset_data(services)
    log.info("bench.p3.seeding", records=opts.p3_records, tenants=opts.p3_tenants)
    p3_seed(services, opts.p3_records, opts.p3_tenants)
    vacuum(services)
    monitor_all_s = p3_snapshots(services)
    vacuum(services)
    measured = []
    for name, call in p3_queries(services).items():
        measure = p3_claim if name.startswith("claim_due") else p3_measure
        measured.extend(measure(services, name, call))
    _write_plans(opts.out_dir / "p3-explain.txt", measured)
    rows = [_p3_row(m) for m in measured]
    rows.append(
        Row(
            f"P3 monitor run, all {opts.p3_tenants} tenants ({opts.p3_records:,} records)",
            f"{monitor_all_s:.2f} s",
            "-",
            "-",
            "info",
            None,
            {"seconds": monitor_all_s},
        )
    )
    return rows


def _p3_row(m: dict[str, Any]) -> Row:
    if m.get("claim"):
        return Row(
            f"P3 {m['call']}: {m['statement']}",
            f"{m['median_s'] * 1000:.1f} ms (reads {m['index'] or 'no index'})",
            f"{CLAIM_TARGET_S * 1000:.0f} ms",
            f"{m['median_s'] / CLAIM_TARGET_S:.2f}",
            f"< {CLAIM_TARGET_S * 1000:.0f} ms",
            m["median_s"] < CLAIM_TARGET_S,
            {k: v for k, v in m.items() if k != "plan"},
        )
    ok = m["median_s"] < 1.0 and m["index_used"]
    used = f"uses {m['index']}" if m["index_used"] else f"NOT using {m['index'] or 'an index'}"
    return Row(
        f"P3 {m['call']}: {m['statement']}",
        f"{m['median_s'] * 1000:.1f} ms ({used})",
        "1 s",
        f"{m['median_s']:.3f}",
        "< 1 s, index used",
        ok,
        {k: v for k, v in m.items() if k != "plan"},
    )


def _write_plans(path: Path, measured: list[dict[str, Any]]) -> None:
    chunks = []
    for m in measured:
        chunks.append(
            f"== {m['call']}: {m['statement']} ({m['median_s'] * 1000:.1f} ms)\n"
            f"{m['sql']}\n\n{m['plan']}\n"
        )
    path.write_text("\n".join(chunks))
    print("\n".join(chunks), flush=True)
