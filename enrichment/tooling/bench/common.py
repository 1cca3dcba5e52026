"""What every benchmark shares: options, result rows and their table, the machine, the
dedicated services (database `bench`, Redis db 8) and the SQL that seeds and counts records.
"""

from __future__ import annotations

import atexit
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from enrichment.tooling import processes
from enrichment.tooling.redis_server import RedisServer, free_port

log = structlog.get_logger(__name__)

HOST = "127.0.0.1"
NOTES = "Customer says the box arrived crushed and the mug inside is broken."
MB = 1024 * 1024


# --- options, results, the table -------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    only: tuple[str, ...]
    scale: float
    db_name: str
    redis_db: int
    p1_records: int
    p1_chains: int
    p1_pool: str
    p2_pools: tuple[str, ...]
    p2_latency_s: float
    p2_db_pool: str
    p2_warmup_s: float
    p2_window_s: float
    p3_records: int
    p4_records: int
    p4_pool: str
    p4_duration_s: float
    out_dir: Path
    p3_tenants: int = 100
    p5_records: int = 5_000
    p5_pool: str = "threads:20"
    p6_big: int = 20_000
    p6_small_tenants: int = 5
    p6_small: int = 20
    p6_pool: str = "prefork:2"
    p6_no_fifo: bool = False
    p7_low: int = 5_000
    p7_critical: int = 50
    p7_pool: str = "prefork:2"
    timeout_s: float = 1800.0
    p9_clients: int = 8
    p9_duration_s: float = 10.0
    # P3s: measure on the database as it is when it holds the records (no drop, no load).
    p3s_reuse: bool = False
    p11_orders: int = 60
    p11_seed: int = 7
    p11_speed: float = 3600.0
    p11_pool: str = "threads:4"
    p12_records: int = 200_000
    p12_pause_s: str | None = None


@dataclass
class Row:
    """One line of the final table. ratio = figure / reference; ok = the target is met."""

    benchmark: str
    figure: str
    reference: str
    ratio: str
    target: str
    ok: bool | None
    data: dict[str, Any] = field(default_factory=dict)


def format_table(rows: list[Row]) -> str:
    head = ("benchmark", "figure", "baseline/bound", "ratio", "target", "result")
    body = [(r.benchmark, r.figure, r.reference, r.ratio, r.target, _verdict(r.ok)) for r in rows]
    widths = [max(len(str(line[i])) for line in (head, *body)) for i in range(len(head))]
    lines = [
        " | ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True))
        for line in (head, *body)
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _verdict(ok: bool | None) -> str:
    return "info" if ok is None else "PASS" if ok else "FAIL"


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {"nproc": os.cpu_count(), "cpu": model, "mem_gib": round(mem_kb / 1024**2, 1)}


# --- services: the dedicated database and Redis db -------------------------------------------


@dataclass(frozen=True)
class Services:
    db_url: str
    broker_url: str
    out_dir: Path

    def env(self, **overrides: str) -> dict[str, str]:
        """Environment for a worker or beat: our services, the anthropic provider, JSON logs."""
        ours = dict(
            DATABASE_URL=self.db_url,
            CELERY_BROKER_URL=self.broker_url,
            ENRICHMENT_VAR_DIR=str(self.out_dir / "var"),
            ENRICHMENT_AI_PROVIDER="anthropic",
            ANTHROPIC_API_KEY="bench-key",
            ENRICHMENT_AI_RPM="0",
            ENRICHMENT_LOG_FORMAT="json",
        )
        return processes.scrubbed_env(**{**ours, **overrides})


def prepare(opts: Options) -> Services:
    """Drop, create and migrate the bench database; start the bench's own redis-server (each
    benchmark flushes its db: never the shared one on 6379), stopped when the bench exits."""
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    redis_server = RedisServer(free_port(), opts.out_dir)
    redis_server.start()
    atexit.register(redis_server.stop)
    services = Services(
        db_url=_reused(opts.db_name)
        if opts.p3s_reuse
        else processes.recreate_database(opts.db_name),
        broker_url=f"redis://{HOST}:{redis_server.port}/{opts.redis_db}",
        out_dir=opts.out_dir,
    )
    # This process enqueues sweeps and chains through the same app, on the same services.
    os.environ.update(services.env())
    from enrichment.core.settings import get_settings

    get_settings.cache_clear()
    log.info("bench.prepared", database=opts.db_name, redis=services.broker_url)
    return services


def _reused(name: str) -> str:
    """The database `name` kept as it is, migrated to the newest revision."""
    from enrichment.core import db

    url = f"postgresql+psycopg://{HOST}:5432/{name}"
    db.migrate(url)
    return url


def reset_data(services: Services) -> None:
    """Empty every table and the Redis db: each benchmark starts from nothing."""
    import redis
    from sqlalchemy import text

    from enrichment.core import db
    from enrichment.core.models import Base

    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with db.get_engine(services.db_url).begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    client = redis.Redis.from_url(services.broker_url)
    client.flushdb()
    client.close()


def sql(services: Services, statement: str, **params: Any) -> Any:
    """Run one statement in its own transaction; its rows (none for a statement without)."""
    from sqlalchemy import text

    from enrichment.core import db

    with db.get_engine(services.db_url).begin() as conn:
        result = conn.execute(text(statement), params)
        return result.all() if result.returns_rows else []


# --- seeding and counting ---------------------------------------------------------------------

_SEED_RECORDS = """
WITH o AS (
  INSERT INTO orders (tenant_id, external_id, payload, events, created_at)
  SELECT :tenant_id, :prefix || g, CAST(:payload AS jsonb), CAST(:events AS jsonb), now()
  FROM generate_series(1, :n) AS g
  RETURNING id, external_id
)
INSERT INTO exception_records (tenant_id, order_id, external_id, reason_code, severity, status,
  notes, ai_source, enrichment_state, enrichment_retry_count, next_attempt_at, created_at,
  updated_at)
SELECT :tenant_id, o.id, o.external_id, 'DAMAGE', :severity, 'OPEN', :notes, '{}', '{}', 0,
  now() + make_interval(secs => :delay_s + o.id % :spread_s), now(), now()
FROM o
"""
ORDER = {
    "name": "#1001",
    "financial_status": "paid",
    "line_items": [{"sku": "SKU-1", "title": "Mug", "quantity": 1, "price": "9.50"}],
    "shipping_address": {"city": "Springfield", "zip": "12345", "country_code": "US"},
}
_EVENTS = [
    {
        "source": "carrier",
        "type": "damage_reported",
        "at": "2026-11-22T15:05:00Z",
        "detail": "parcel crushed, contents broken",
    }
]


def seed_tenant(services: Services, name: str = "bench-3pl") -> int:
    rows = sql(
        services,
        "INSERT INTO tenants (name, confidence_threshold, settings, created_at) "
        "VALUES (:name, 0.7, '{}', now()) RETURNING id",
        name=name,
    )
    return rows[0][0]


def seed_records(
    services: Services,
    tenant_id: int,
    n: int,
    *,
    prefix: str,
    delay_s: float = -1.0,
    spread_s: int = 1,
    severity: str = "high",
) -> None:
    """n orders + n records in two set-based statements; due at now + delay_s (+ spread)."""
    from sqlalchemy import text

    from enrichment.core import db

    with db.get_engine(services.db_url).begin() as conn:
        conn.execute(
            text(_SEED_RECORDS),
            dict(
                tenant_id=tenant_id,
                prefix=prefix,
                n=n,
                payload=json.dumps(ORDER),
                events=json.dumps(_EVENTS),
                notes=NOTES,
                delay_s=delay_s,
                spread_s=spread_s,
                severity=severity,
            ),
        )


def finished_count(services: Services) -> int:
    rows = sql(
        services,
        "SELECT count(*) FROM exception_records "
        "WHERE enriched_at IS NOT NULL OR escalated_at IS NOT NULL",
    )
    return rows[0][0]


def attempt_outcomes(services: Services) -> dict[str, int]:
    rows = sql(services, "SELECT outcome, count(*) FROM enrichment_attempts GROUP BY outcome")
    return {outcome: count for outcome, count in rows}
