"""Migration 0021 on a populated PostgreSQL database: every row of the three history tables
is in the partitioned tables after it (and back after its downgrade), ids continue from the
same sequences, and the ORM reads and writes them as before."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from enrichment.core import db
from enrichment.core.models import EnrichmentAttempt
from enrichment.tooling.bench.partition_migration import SNAPSHOTS
from tests.conftest import migrate
from tests.factories import make_record, make_tenant

TABLES = ("enrichment_attempts", "outbox_events", "metric_snapshots")
SCRIPTS = ScriptDirectory.from_config(db.alembic_config("sqlite://"))
BEFORE = SCRIPTS.get_revision("0021").down_revision

# Rows over 12 weeks (and two rows years back), written the way a long-running fleet has.
FILL = """
INSERT INTO enrichment_attempts (tenant_id, record_id, stage, outcome, latency_s, provider,
    input_tokens, output_tokens, cache_write_tokens, cache_read_tokens, cost_usd, created_at)
SELECT :tenant, :record, 'classification', CASE WHEN g % 7 = 0 THEN 'failed' ELSE 'succeeded' END,
    0.1, 'local', g, 0, 0, 0, 0.0, now() - make_interval(mins => g * 37)
FROM generate_series(1, 3000) g;
INSERT INTO enrichment_attempts (tenant_id, record_id, stage, outcome, latency_s, provider,
    input_tokens, output_tokens, cache_write_tokens, cache_read_tokens, cost_usd, created_at)
VALUES (:tenant, :record, 'analysis', 'failed', 1, 'local', 0, 0, 0, 0, 0, now() - interval '5 years');
INSERT INTO outbox_events (tenant_id, record_id, type, data, status, attempts, next_delivery_at,
    created_at)
SELECT :tenant, :record, 'record.enriched', jsonb_build_object('n', g),
    CASE WHEN g % 3 = 0 THEN 'pending' ELSE 'delivered' END, 0, now(), now() - make_interval(mins => g * 101)
FROM generate_series(1, 1000) g;
"""  # noqa: E501


@pytest.fixture
def populated(pg_url) -> Iterator[str]:
    """A scratch database at the revision before 0021, with history in the three tables."""
    base = pg_url.rsplit("/", 1)[0]
    admin = create_engine(base + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS enrichment_partitioning WITH (FORCE)"))
        conn.execute(text("CREATE DATABASE enrichment_partitioning"))
    url = base + "/enrichment_partitioning"
    migrate(url, BEFORE)
    with db.session_factory(url).begin() as s:
        tenant = make_tenant(s)
        record = make_record(s, tenant)
        for statement in FILL.split(";")[:-1]:
            s.execute(text(statement), {"tenant": tenant.id, "record": record.id})
        s.execute(text(SNAPSHOTS.format(tenant=":tenant")),
                  {"tenant": tenant.id, "n": 400, "every_s": 5 * 3600})  # fmt: skip
    yield url
    db.dispose_engines()
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS enrichment_partitioning WITH (FORCE)"))
    admin.dispose()


def _fingerprint(url: str) -> dict[str, tuple]:
    """Per table: rows, largest id, and an md5 of every row's text in id order."""
    engine = create_engine(url)
    with engine.connect() as conn:
        found = {
            t: tuple(conn.execute(text(
                f"SELECT count(*), max(id), md5(string_agg(t::text, '|' ORDER BY id)) FROM {t} t"
            )).one())
            for t in TABLES
        }  # fmt: skip
        q = "SELECT relname, relkind FROM pg_class WHERE relname = ANY(:names)"
        kinds = conn.execute(text(q), {"names": list(TABLES)})
        found["kinds"] = tuple(sorted(kinds))
    engine.dispose()
    return found


def _new_attempt_id(url: str) -> int:
    sessions = db.session_factory(url)
    with sessions.begin() as s:
        row = EnrichmentAttempt(tenant_id=1, record_id=1, stage="classification",
                                outcome="succeeded", latency_s=0.1, provider="local")  # fmt: skip
        s.add(row)
        s.flush()
        row_id = row.id
    with sessions() as s:
        assert s.get(EnrichmentAttempt, row_id).stage == "classification"
    return row_id


def _tx_default_fills(url: str) -> bool:
    engine = create_engine(url)
    with engine.begin() as conn:
        tx = conn.execute(text(
            "INSERT INTO outbox_events (tenant_id, record_id, type, data, status, attempts,"
            " next_delivery_at, created_at) VALUES (1, 1, 'record.enriched', '{}', 'pending', 0,"
            " now(), now()) RETURNING tx"
        )).scalar()  # fmt: skip
        mine = conn.execute(text("SELECT pg_current_xact_id()::text::bigint")).scalar()
    engine.dispose()
    return tx == mine


def test_the_migration_loses_nothing_and_ids_continue(populated):
    before = _fingerprint(populated)
    assert before["enrichment_attempts"][0] == 3001

    migrate(populated, "0021")

    after = _fingerprint(populated)
    assert {t: after[t] for t in TABLES} == {t: before[t] for t in TABLES}
    assert dict(after["kinds"]) == dict.fromkeys(TABLES, "p")
    assert _new_attempt_id(populated) > before["enrichment_attempts"][1]
    assert _tx_default_fills(populated)

    migrate(populated, BEFORE, down=True)

    back = _fingerprint(populated)
    assert back["enrichment_attempts"][0] == before["enrichment_attempts"][0] + 1
    assert back["metric_snapshots"] == before["metric_snapshots"]
    assert dict(back["kinds"]) == dict.fromkeys(TABLES, "r")
    assert _new_attempt_id(populated) > back["enrichment_attempts"][1]


def test_the_migration_spreads_rows_by_week_and_keeps_a_default(populated):
    migrate(populated, "0021")
    engine = create_engine(populated)
    with engine.connect() as conn:
        homes = dict(conn.execute(text(
            "SELECT tableoid::regclass::text, count(*) FROM enrichment_attempts GROUP BY 1"
        )).all())  # fmt: skip
    engine.dispose()
    assert sum(homes.values()) == 3001
    assert len(homes) >= 12  # 3000 rows 37 minutes apart: about 11 weeks, and 5 years back
    assert "enrichment_attempts_default" not in homes  # every week with rows has its partition
