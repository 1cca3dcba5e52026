"""Record tallies (issue 26, the monitor at 10M records): each tenant's records counted by
what the monitor counts them by, kept as records change, so that the monitor's record pass
reads a few hundred tally rows instead of every record a tenant ever had
(enrichment/core/tallies.py).

- `record_tallies` (the folded counts) and `record_tally_deltas` (+n / -n rows appended by
  triggers, folded by the monitor). No foreign key to tenants: a record's write must never
  wait on the monitor's lock of its tenant row.
- PostgreSQL only, the triggers on exception_records: INSERT and DELETE per statement (a
  transition table, grouped: a bulk load or a prune adds a handful of rows), UPDATE per row
  WHEN the key changed (a claim, a lease or a retry's schedule changes no key and costs
  nothing), TRUNCATE empties the tallies. SQLite keeps its scan (the embedded default is
  small): its tables stay empty.
- `record_tallies_rebuild()` counts every record again (the backfill below; a bulk load that
  disabled the triggers calls it after).
- The monitor's windows read narrow indexes instead of the covering one, which is dropped:
  `ix_exception_records_enriched` (records enriched in the window), `..._confidence` (the one
  hundredth of confidence the tenant's threshold falls in), and `idx_enrichment_pending` now
  keyed (tenant_id, created_at) (the unclassified records younger than the stuck limit).
- `ix_exception_records_backlog` INCLUDEs `id` too: the backlog route's next records by due
  time are an index-only scan of it (10M records: 180 ms -> 0.06 ms; the planner had taken
  `idx_enrichment_due` and filtered 8,000 other tenants' rows through the heap).

The backfill locks exception_records against writes while it counts (CREATE TRIGGER takes a
SHARE ROW EXCLUSIVE lock until the migration commits): stop the fleet or expect its writes to
wait; docs/benchmarks.md says how long it took at 10M records.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07 02:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

TABLES = ("record_tallies", "record_tally_deltas")
REVIEW = (
    "{r}.reviewed_at IS NULL AND ({r}.escalated_at IS NOT NULL OR ({r}.enriched_at IS NOT NULL"
    " AND ({r}.audit_sample OR {r}.approval_requested_at IS NOT NULL)))"
)
DECILE = (
    "CASE WHEN {r}.ai_confidence >= 0.0 AND {r}.ai_confidence <= 1.0 THEN CASE"
    + "".join(f" WHEN {{r}}.ai_confidence < {(i + 1) / 10} THEN {i}" for i in range(9))
    + " ELSE 9 END END"
)
# (column, its SQL over the row {r}): the tally key, in the tables' column order.
KEY = (
    ("tenant_id", "{r}.tenant_id"),
    ("record_type", "{r}.record_type"),
    ("enriched", "{r}.enriched_at IS NOT NULL"),
    ("escalated", "{r}.escalated_at IS NOT NULL"),
    ("reviewed", "{r}.reviewed_at IS NOT NULL"),
    ("queued", f"COALESCE({REVIEW}, false)"),
    ("human", "COALESCE({r}.decided_by = 'human', false)"),
    ("analysed", "{r}.ai_analysis IS NOT NULL"),
    ("raised", "COALESCE({r}.source = 'ai_order_analyzer', false)"),
    ("attached", "{r}.attached_at IS NOT NULL"),
    ("retries", "{r}.enrichment_retry_count"),
    ("decile", DECILE),
    (
        "cent",  # GREATEST and LEAST skip a NULL: the CASE keeps it
        "CASE WHEN {r}.ai_confidence IS NOT NULL"
        " THEN floor(LEAST(GREATEST({r}.ai_confidence, -1.0), 2.0) * 100)::integer END",
    ),
)
COLUMNS = ", ".join(c for c, _ in KEY)
GROUP = ", ".join(str(i + 1) for i in range(len(KEY)))


def key(r: str) -> str:
    return ", ".join(sql.format(r=r) for _, sql in KEY)


FUNCTIONS = f"""
CREATE FUNCTION record_tallies_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO record_tally_deltas ({COLUMNS}, n)
  SELECT {key("r")}, CASE WHEN TG_OP = 'DELETE' THEN -count(*) ELSE count(*) END
  FROM changed r GROUP BY {GROUP};
  RETURN NULL;
END $$;

CREATE FUNCTION record_tallies_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO record_tally_deltas ({COLUMNS}, n)
  VALUES ({key("OLD")}, -1), ({key("NEW")}, 1);
  RETURN NULL;
END $$;

CREATE FUNCTION record_tallies_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM record_tally_deltas;
  DELETE FROM record_tallies;
  RETURN NULL;
END $$;

CREATE FUNCTION record_tallies_rebuild() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE counted bigint;
BEGIN
  DELETE FROM record_tally_deltas;
  DELETE FROM record_tallies;
  INSERT INTO record_tallies ({COLUMNS}, n)
  SELECT {key("r")}, count(*) FROM exception_records r GROUP BY {GROUP};
  SELECT coalesce(sum(n), 0) INTO counted FROM record_tallies;
  RETURN counted;
END $$;
"""
TRIGGERS = f"""
CREATE TRIGGER record_tallies_insert AFTER INSERT ON exception_records
  REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION record_tallies_rows();
CREATE TRIGGER record_tallies_delete AFTER DELETE ON exception_records
  REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION record_tallies_rows();
CREATE TRIGGER record_tallies_update AFTER UPDATE ON exception_records FOR EACH ROW
  WHEN (({key("OLD")}) IS DISTINCT FROM ({key("NEW")}))
  EXECUTE FUNCTION record_tallies_update();
CREATE TRIGGER record_tallies_truncate AFTER TRUNCATE ON exception_records
  FOR EACH STATEMENT EXECUTE FUNCTION record_tallies_truncate();
"""
DROP = """
DROP TRIGGER IF EXISTS record_tallies_insert ON exception_records;
DROP TRIGGER IF EXISTS record_tallies_delete ON exception_records;
DROP TRIGGER IF EXISTS record_tallies_update ON exception_records;
DROP TRIGGER IF EXISTS record_tallies_truncate ON exception_records;
DROP FUNCTION IF EXISTS record_tallies_rows();
DROP FUNCTION IF EXISTS record_tallies_update();
DROP FUNCTION IF EXISTS record_tallies_truncate();
DROP FUNCTION IF EXISTS record_tallies_rebuild();
"""
PENDING = "ai_confidence IS NULL OR ai_label IS NULL"
BACKLOG = "enriched_at IS NULL AND escalated_at IS NULL"
BACKLOG_INCLUDE = [  # as migration 0022 left it
    "enrichment_retry_count",
    "lease_expires_at",
    "sched_at",
    "enriched_at",
    "escalated_at",
]
MONITOR_INCLUDE = [
    "enriched_at",
    "escalated_at",
    "ai_confidence",
    "enrichment_retry_count",
    "created_at",
    "reviewed_at",
    "audit_sample",
    "decided_by",
    "approval_requested_at",
    "record_type",
]


def _tally_table(name: str) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("record_type", sa.String(16), nullable=False),
        *(
            sa.Column(c, sa.Boolean(), nullable=False)
            for c in ("enriched", "escalated", "reviewed", "queued", "human")
        ),
        *(sa.Column(c, sa.Boolean(), nullable=False) for c in ("analysed", "raised", "attached")),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("decile", sa.Integer(), nullable=True),
        sa.Column("cent", sa.Integer(), nullable=True),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"pk_{name}"),
    )
    op.create_index(f"ix_{name}_tenant_id", name, ["tenant_id"])


def _pending(columns: list[str], include: list[str]) -> None:
    op.drop_index("idx_enrichment_pending", table_name="exception_records")
    op.create_index(
        "idx_enrichment_pending",
        "exception_records",
        columns,
        postgresql_include=include,
        postgresql_where=sa.text(PENDING),
        sqlite_where=sa.text(PENDING),
    )


def _backlog(include: list[str]) -> None:
    op.drop_index("ix_exception_records_backlog", table_name="exception_records")
    op.create_index(
        "ix_exception_records_backlog",
        "exception_records",
        ["tenant_id", "next_attempt_at"],
        postgresql_include=include,
        postgresql_where=sa.text(BACKLOG),
        sqlite_where=sa.text(BACKLOG),
    )


def upgrade() -> None:
    for name in TABLES:
        _tally_table(name)
    _backlog(["id", *BACKLOG_INCLUDE])
    op.drop_index("ix_exception_records_monitor", table_name="exception_records")
    _pending(["tenant_id", "created_at"], ["ai_confidence", "record_type"])
    op.create_index(
        "ix_exception_records_enriched",
        "exception_records",
        ["tenant_id", "enriched_at"],
        postgresql_include=["created_at", "record_type"],
        postgresql_where=sa.text("enriched_at IS NOT NULL"),
        sqlite_where=sa.text("enriched_at IS NOT NULL"),
    )
    op.create_index(
        "ix_exception_records_confidence",
        "exception_records",
        ["tenant_id", "ai_confidence"],
        postgresql_include=["record_type"],
        postgresql_where=sa.text("ai_confidence IS NOT NULL"),
        sqlite_where=sa.text("ai_confidence IS NOT NULL"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FUNCTIONS)
        op.execute(TRIGGERS)
        op.execute("SELECT record_tallies_rebuild()")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(DROP)
    op.drop_index("ix_exception_records_confidence", table_name="exception_records")
    op.drop_index("ix_exception_records_enriched", table_name="exception_records")
    _pending(["tenant_id"], [])
    _backlog(BACKLOG_INCLUDE)
    op.create_index(
        "ix_exception_records_monitor",
        "exception_records",
        ["tenant_id"],
        postgresql_include=MONITOR_INCLUDE,
    )
    for name in TABLES:
        op.drop_index(f"ix_{name}_tenant_id", table_name=name)
        op.drop_table(name)
