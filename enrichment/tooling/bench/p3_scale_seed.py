"""The data of P3 at scale (`p3_scale`): `n` records over `tenants` tenants with the history a
fleet leaves behind, generated inside PostgreSQL (INSERT ... SELECT generate_series: no row
crosses the wire), then VACUUM ANALYZE. The mix, by `id % 100` (`b`):

- 0-79 enriched (0-69 at the first try: 3 completed attempts; 70-79 after one failed
  attempt: 4); b 0 an audit sample a person reviewed (a review row), b 1 one still waiting;
  b < 20 asked for an action (an `action.requested` event beside `record.enriched`);
- 80-83 escalated (2 failed + 3 completed attempts, a `record.escalated` event); b 80 a
  person reviewed it (a review row, a `record.reviewed` event), 81-83 wait in the queue;
- 84-87 low confidence, waiting for the recheck (2 attempts);
- 88-94 in backoff, 15 min to 4 h ahead (1-3 failed attempts and 1 completed);
- 95-99 due now (odd ids after one failed attempt; one in ten of them leased).

That is 3.0 attempts and 1.0 outbox events a record. Events are delivered but one in a
thousand pending and one in a thousand dead. Tenant 1 holds 40 % of the records (the worst
case for a per-tenant query), the others share the rest. Records arrive at `PER_DAY` (1M) a
day, the newest 10 minutes ago: 10M records are ten days of a large fleet; each record's
attempts and outcome follow within two minutes of its arrival.
The JSON of orders, analyses and events is the size a real one is (a few hundred bytes), so
that the bytes per row measured on it stand for production's.
"""

from __future__ import annotations

import json
import time

import structlog

from enrichment.tooling.bench.common import NOTES, ORDER, Services, sql

log = structlog.get_logger(__name__)

PER_DAY = 1_000_000
TALLY_INSERT = "record_tallies_insert"  # migration 0024
ANALYSIS = {
    "summary": "Carrier scanned the parcel as damaged at the hub; the customer reports a "
    "broken mug. Evidence supports a damaged package, not a loss.",
    "problems": [{"type": "damaged_package", "evidence": "damage_reported scan", "score": 0.9}],
    "carrier": "UPS",
}

_TENANTS = """
INSERT INTO tenants (id, name, confidence_threshold, settings, created_at)
SELECT t, 'scale-' || t, 0.7, '{}', now() - interval '90 days' FROM generate_series(1, :tenants) t
"""
_ORDERS = """
INSERT INTO orders (id, tenant_id, external_id, payload, events, created_at)
SELECT g, CASE WHEN g % 5 < 2 THEN 1 ELSE 2 + g % (:tenants - 1) END, 'o-' || g,
  CAST(:payload AS jsonb), '[]',
  now() - interval '10 minutes' - g * (86400.0 / :per_day) * interval '1 second'
FROM generate_series(1, :n) g
"""
_RECORDS = """
INSERT INTO exception_records (id, tenant_id, order_id, external_id, reason_code, severity,
  status, notes, ai_label, ai_confidence, ai_analysis, ai_source, enrichment_state,
  enrichment_retry_count, next_attempt_at, lease_token, lease_expires_at, enriched_at,
  escalated_at, escalation_reason, audit_sample, sampling_probability, decided_by,
  final_label, reviewed_at, last_enrichment_attempt, created_at, updated_at)
SELECT o.id, o.tenant_id, o.id, 'e-' || o.id, 'DAMAGE',
  (ARRAY['low', 'medium', 'high', 'critical'])[1 + o.id % 4], 'OPEN', :notes,
  CASE WHEN b < 84 THEN 'DAMAGED_PACKAGE' WHEN b BETWEEN 84 AND 87 THEN 'OTHER' END,
  CASE WHEN b < 80 THEN 0.85 WHEN b < 84 THEN 0.55 WHEN b BETWEEN 84 AND 87 THEN 0.4 END,
  CASE WHEN b < 88 THEN CAST(:analysis AS jsonb) END,
  CASE WHEN b < 88 THEN '{"classification": "ai"}'::jsonb ELSE '{}'::jsonb END,
  CASE WHEN b >= 88 THEN '{"errors": ["provider timeout after 30 s"]}'::jsonb
       ELSE '{}'::jsonb END,
  CASE WHEN b BETWEEN 80 AND 83 THEN 5 WHEN b BETWEEN 84 AND 94 THEN 1 + o.id % 4
       WHEN b >= 95 THEN o.id % 2 ELSE 0 END,
  CASE WHEN b BETWEEN 84 AND 87 THEN now() + (1 + o.id % 24) * interval '1 hour'
       WHEN b BETWEEN 88 AND 94 THEN now() + (15 + o.id % 225) * interval '1 minute'
       WHEN b >= 95 THEN now() - (o.id % 3600) * interval '1 second'
       ELSE o.created_at END,
  CASE WHEN b >= 95 AND o.id % 10 = 0 THEN md5(o.id::text)::uuid::text END,
  CASE WHEN b >= 95 AND o.id % 10 = 0 THEN now() + interval '10 minutes' END,
  CASE WHEN b < 80 THEN o.created_at + interval '40 seconds' END,
  CASE WHEN b BETWEEN 80 AND 83 THEN o.created_at + interval '60 seconds' END,
  CASE WHEN b BETWEEN 80 AND 83 THEN 'confidence 0.55 under the threshold 0.70' END,
  b IN (0, 1), CASE WHEN b < 80 THEN 0.02 END,
  CASE WHEN b IN (0, 80) THEN 'human' END,
  CASE WHEN b IN (0, 80) THEN 'DAMAGED_PACKAGE' END,
  CASE WHEN b IN (0, 80) THEN o.created_at + interval '2 minutes' END,
  CASE WHEN b < 95 OR o.id % 2 = 1 THEN o.created_at + interval '40 seconds' END,
  o.created_at, o.created_at
FROM (SELECT *, id % 100 AS b FROM orders) o
"""
# Per record: nf failed attempts, then nok completed ones (stage by position).
_ATTEMPTS = """
INSERT INTO enrichment_attempts (tenant_id, record_id, stage, outcome, error, latency_s,
  provider, model, prompt_version, input_tokens, output_tokens, cache_write_tokens,
  cache_read_tokens, cost_usd, lease_token, created_at)
SELECT r.tenant_id, r.id,
  CASE WHEN j <= nf THEN 'order_analysis'
       ELSE (ARRAY['order_analysis', 'classification', 'automation'])[j - nf] END,
  CASE WHEN j <= nf THEN 'failed' ELSE 'completed' END,
  CASE WHEN j <= nf THEN 'provider timeout after 30 s' END,
  0.6 + (j % 5) * 0.1, 'anthropic', 'claude-haiku-4-5', 'v2', 500, 80, 0, 7600, 0.001,
  md5(r.id::text || '-' || least(j, nf + 1))::uuid::text,
  r.created_at + j * interval '8 seconds'
FROM (
  SELECT id, tenant_id, created_at,
    CASE WHEN id % 100 BETWEEN 70 AND 79 THEN 1 WHEN id % 100 BETWEEN 80 AND 83 THEN 2
         WHEN id % 100 BETWEEN 88 AND 94 THEN 1 + id % 3 WHEN id % 100 >= 95 THEN id % 2
         ELSE 0 END AS nf,
    CASE WHEN id % 100 < 84 THEN 3 WHEN id % 100 < 88 THEN 2 WHEN id % 100 < 95 THEN 1
         ELSE 0 END AS nok
  FROM exception_records
) r, generate_series(1, r.nf + r.nok) j
"""
# One event per finished record, an action.requested for b < 20, a record.reviewed for b 80.
# `tx` rises with the record's age, below the oldest running transaction (the pull feed shows
# only finished ones): one INSERT would give every event the same tx, and the planner then
# misjudges the cursor's `(tx, id) > (...)` (docs/benchmarks.md).
_EVENTS = """
INSERT INTO outbox_events (tenant_id, record_id, type, data, status, attempts,
  next_delivery_at, delivered_at, created_at, tx)
SELECT r.tenant_id, r.id, e.type,
  jsonb_build_object('tenant', 'scale-' || r.tenant_id, 'record', r.external_id,
    'label', r.ai_label, 'confidence', r.ai_confidence, 'analysis', r.ai_analysis,
    'actions', CASE WHEN e.type = 'action.requested' THEN '["refund"]'::jsonb
                    ELSE '[]'::jsonb END),
  CASE WHEN r.id % 1000 = 3 THEN 'pending' WHEN r.id % 1000 = 7 THEN 'dead'
       ELSE 'delivered' END,
  CASE WHEN r.id % 1000 = 7 THEN 12 ELSE 1 END,
  coalesce(r.enriched_at, r.escalated_at),
  CASE WHEN r.id % 1000 IN (3, 7) THEN NULL ELSE coalesce(r.enriched_at, r.escalated_at) END,
  coalesce(r.enriched_at, r.escalated_at),
  1 + (CAST(CAST(pg_snapshot_xmin(pg_current_snapshot()) AS text) AS bigint) - 2)
    * (:n - r.id) / :n
FROM exception_records r
CROSS JOIN LATERAL (VALUES
  (CASE WHEN r.enriched_at IS NOT NULL THEN 'record.enriched' ELSE 'record.escalated' END),
  (CASE WHEN r.id % 100 < 20 THEN 'action.requested'
        WHEN r.id % 100 = 80 THEN 'record.reviewed' END)
) AS e(type)
WHERE (r.enriched_at IS NOT NULL OR r.escalated_at IS NOT NULL) AND e.type IS NOT NULL
"""
_REVIEWS = """
INSERT INTO reviews (tenant_id, record_id, kind, reviewer, label, actions, note, ai_label,
  ai_confidence, sampling_probability, created_at)
SELECT tenant_id, id, CASE WHEN escalated_at IS NULL THEN 'audit' ELSE 'escalation' END,
  'reviewer-1', final_label, '[]', NULL, ai_label, ai_confidence, sampling_probability,
  reviewed_at
FROM exception_records WHERE reviewed_at IS NOT NULL
"""
_SEQUENCES = """
SELECT setval(pg_get_serial_sequence('tenants', 'id'), :tenants),
       setval(pg_get_serial_sequence('orders', 'id'), :n),
       setval(pg_get_serial_sequence('exception_records', 'id'), :n)
"""


# The tables loaded; their secondary indexes are dropped for the load and built after it
# (a sort per index instead of ten index insertions per row).
LOADED = ("orders", "exception_records", "enrichment_attempts", "outbox_events", "reviews")
_SECONDARY = """
SELECT i.indexname, i.indexdef FROM pg_indexes i
WHERE i.schemaname = current_schema() AND i.tablename = ANY(:tables)
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)
"""


def seed(services: Services, n: int, tenants: int) -> dict[str, float]:
    """Load the data, its secondary indexes built afterwards; the seconds each step took."""
    steps = [
        ("tenants", _TENANTS, {"tenants": tenants}),
        (
            "orders",
            _ORDERS,
            {"n": n, "payload": json.dumps(ORDER), "tenants": tenants, "per_day": PER_DAY},
        ),
        ("records", _RECORDS, {"notes": NOTES, "analysis": json.dumps(ANALYSIS)}),
        ("attempts", _ATTEMPTS, {}),
        ("outbox_events", _EVENTS, {"n": n}),
        ("reviews", _REVIEWS, {}),
        ("sequences", _SEQUENCES, {"n": n, "tenants": tenants}),
    ]
    took = {"partitions": _partitions(services, n)}
    indexes = sql(services, _SECONDARY, tables=list(LOADED))
    for name, _ in indexes:
        sql(services, f'DROP INDEX "{name}"')
    # The tallies' insert trigger would hold the 10M new rows as its transition table: off for
    # the load, then every record counted once (as migration 0024 does on a populated table).
    sql(services, f"ALTER TABLE exception_records DISABLE TRIGGER {TALLY_INSERT}")
    for name, statement, params in steps:
        started = time.perf_counter()
        sql(services, statement, **params)
        took[name] = time.perf_counter() - started
        log.info("bench.p3s.seeded", table=name, seconds=round(took[name], 1))
    sql(services, f"ALTER TABLE exception_records ENABLE TRIGGER {TALLY_INSERT}")
    took["indexes"] = build_indexes(services, [d for _, d in indexes])
    took["tallies"] = count_tallies(services)
    return took


def count_tallies(services: Services) -> float:
    """Count every record into the tallies (core/tallies.py); the seconds it took."""
    started = time.perf_counter()
    counted = sql(services, "SELECT record_tallies_rebuild()")[0][0]
    seconds = time.perf_counter() - started
    log.info("bench.p3s.tallies", records=counted, seconds=round(seconds, 1))
    return seconds


def build_indexes(services: Services, definitions: list[str]) -> float:
    """Build indexes from pg_indexes definitions; the seconds it took. A partitioned table's
    index is defined `ON ONLY` the parent (the partitions' own indexes attached later): built
    without ONLY, so that it recurses into every partition and is valid."""
    started = time.perf_counter()
    for definition in definitions:
        whole = definition.replace(" ON ONLY ", " ON ", 1)
        sql(services, f"SET maintenance_work_mem = '1GB'; {whole}")
    seconds = time.perf_counter() - started
    log.info("bench.p3s.indexed", indexes=len(definitions), seconds=round(seconds, 1))
    return seconds


_INVALID = """
SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_namespace n ON n.oid = i.relnamespace
WHERE NOT x.indisvalid AND n.nspname = current_schema()
"""


def repair_indexes(services: Services) -> float:
    """Drop and build again every invalid index (a partitioned index built ON ONLY the parent
    by an earlier version of `seed`); the seconds it took (0 when all were valid)."""
    invalid = sql(services, _INVALID)
    for name, _ in invalid:
        sql(services, f'DROP INDEX "{name}"')
    return build_indexes(services, [d for _, d in invalid]) if invalid else 0.0


def _partitions(services: Services, n: int) -> float:
    """The time partitions (migration 0021) the fleet would have made over the history's days
    (history/partitions.py: the week of the oldest record and the weeks ahead of it)."""
    from datetime import UTC, datetime, timedelta

    from enrichment.core import db
    from enrichment.history import partitions

    started = time.perf_counter()
    now = datetime.now(UTC)
    engine, made = db.get_engine(services.db_url), []
    at = now - timedelta(days=n / PER_DAY, minutes=10)
    while at < now + timedelta(days=28):  # each call makes its week and the weeks ahead of it
        made += partitions.make_ahead(engine, now=at)
        at += timedelta(days=7)
    log.info("bench.p3s.partitions", made=made)
    return time.perf_counter() - started


def vacuum_analyze(services: Services) -> float:
    """VACUUM ANALYZE the database (visibility map for index-only scans, fresh statistics)."""
    from sqlalchemy import create_engine, text

    started = time.perf_counter()
    engine = create_engine(services.db_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()
    return time.perf_counter() - started


_SIZES = """
SELECT c.relname, sum(pg_total_relation_size(t.relid)), sum(pg_relation_size(t.relid)),
  sum(pg_indexes_size(t.relid))
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
  LATERAL (SELECT c.oid AS relid UNION SELECT relid FROM pg_partition_tree(c.oid)) t
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = current_schema()
  AND t.relid IS NOT NULL
GROUP BY c.relname ORDER BY 2 DESC
"""


def sizes(services: Services) -> dict[str, object]:
    """The database's size and each table's, its partitions summed (total, heap, indexes),
    with the exact row counts of the tables the per-row figures divide by."""
    db_bytes = sql(services, "SELECT pg_database_size(current_database())")[0][0]
    tables = {
        name: {"total": int(total), "heap": int(heap), "indexes": int(idx)}
        for name, total, heap, idx in sql(services, _SIZES)
    }
    for name in ("orders", "exception_records", "enrichment_attempts", "outbox_events"):
        tables[name]["rows"] = sql(services, f"SELECT count(*) FROM {name}")[0][0]  # noqa: S608
    return {"database": db_bytes, "tables": tables}


def per_row(size: dict) -> dict[str, float]:
    """Bytes per record (its order and its record row, indexes included), per attempt, per
    outbox event."""
    t = size["tables"]
    rec = t["exception_records"]
    return {
        "record": (t["orders"]["total"] + rec["total"]) / rec["rows"],
        "attempt": t["enrichment_attempts"]["total"] / t["enrichment_attempts"]["rows"],
        "event": t["outbox_events"]["total"] / t["outbox_events"]["rows"],
    }
