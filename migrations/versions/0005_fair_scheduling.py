"""Fair scheduling: the record's `priority`, its place in its tenant's order (`sched_at`,
kept by a trigger on both databases) with its index, the leased-records index for the
per-tenant in-flight cap, and an attempts index by time for the fleet's recent throughput.

`sched_at` = `next_attempt_at` - boost(severity) - boost(priority): see
enrichment/core/scheduling.py, whose constants these triggers repeat (a migration is
history; tests/test_scheduling.py checks that both agree).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 11:20:00
"""

import sqlalchemy as sa
from alembic import op

from enrichment.core.models import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BACKLOG = "enriched_at IS NULL AND escalated_at IS NULL"
BOOST = (
    "(CASE {r}.severity WHEN 'critical' THEN 3600 WHEN 'high' THEN 1200"
    " WHEN 'medium' THEN 300 ELSE 0 END + 36 * LEAST(GREATEST(COALESCE({r}.priority, 0), 0), 100))"
)
PG_FUNCTION = f"""
CREATE FUNCTION exception_records_sched() RETURNS trigger AS $$
BEGIN
    NEW.sched_at := NEW.next_attempt_at - make_interval(secs => {BOOST.format(r="NEW")});
    RETURN NEW;
END
$$ LANGUAGE plpgsql
"""
PG_TRIGGER = """
CREATE TRIGGER exception_records_sched BEFORE INSERT OR UPDATE OF next_attempt_at, severity,
priority ON exception_records FOR EACH ROW EXECUTE FUNCTION exception_records_sched()
"""
# SQLite: no BEFORE-row assignment, so an AFTER trigger sets it (the same text format
# SQLAlchemy writes: 'YYYY-MM-DD HH:MM:SS.ffffff' sorts as text in time order).
SQLITE_BOOST = BOOST.replace("LEAST(GREATEST(", "MIN(MAX(")
SQLITE_SET = (
    "UPDATE exception_records SET sched_at = strftime('%Y-%m-%d %H:%M:%f', NEW.next_attempt_at,"
    " '-' || {boost} || ' seconds') WHERE id = NEW.id"
).format(boost=SQLITE_BOOST.format(r="NEW"))
SQLITE_TRIGGERS = [
    f"CREATE TRIGGER exception_records_sched_ins AFTER INSERT ON exception_records"
    f" BEGIN {SQLITE_SET}; END",
    f"CREATE TRIGGER exception_records_sched_upd AFTER UPDATE OF next_attempt_at, severity,"
    f" priority ON exception_records BEGIN {SQLITE_SET}; END",
]


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.add_column("exception_records", sa.Column("priority", sa.Integer(), nullable=True))
    op.add_column(
        "exception_records", sa.Column("sched_at", UTCDateTime(timezone=True), nullable=True)
    )
    if postgres:
        op.execute(PG_FUNCTION)
        op.execute(PG_TRIGGER)
        op.execute(
            "UPDATE exception_records SET sched_at = next_attempt_at"
            f" - make_interval(secs => {BOOST.format(r='exception_records')})"
        )
    else:
        for trigger in SQLITE_TRIGGERS:
            op.execute(trigger)
        op.execute(
            "UPDATE exception_records SET sched_at = strftime('%Y-%m-%d %H:%M:%f',"
            f" next_attempt_at, '-' || {SQLITE_BOOST.format(r='exception_records')} || ' seconds')"
        )
    op.create_index(
        "ix_exception_records_sched",
        "exception_records",
        ["tenant_id", "sched_at"],
        postgresql_where=sa.text(BACKLOG),
        sqlite_where=sa.text(BACKLOG),
    )
    op.create_index(
        "ix_exception_records_leased",
        "exception_records",
        ["tenant_id"],
        postgresql_where=sa.text("lease_token IS NOT NULL"),
        sqlite_where=sa.text("lease_token IS NOT NULL"),
    )
    op.create_index("ix_enrichment_attempts_created", "enrichment_attempts", ["created_at"])
    snapshots = [
        sa.Column("oldest_due_age_s", sa.Float(), nullable=True),
        sa.Column("due_records", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_sweep_due", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_sweep_claimed", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("spend_today_usd", sa.Float(), nullable=False, server_default="0"),
    ]
    for column in snapshots:
        op.add_column("metric_snapshots", column)
    op.create_table(
        "sweep_stats",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("swept_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("due", sa.Integer(), nullable=False),
        sa.Column("claimed", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_sweep_stats_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_sweep_stats")),
    )


def downgrade() -> None:
    op.drop_table("sweep_stats")
    with op.batch_alter_table("metric_snapshots") as batch:
        for name in (
            "spend_today_usd",
            "last_sweep_claimed",
            "last_sweep_due",
            "due_records",
            "oldest_due_age_s",
        ):
            batch.drop_column(name)
    op.drop_index("ix_enrichment_attempts_created", table_name="enrichment_attempts")
    op.drop_index("ix_exception_records_leased", table_name="exception_records")
    op.drop_index("ix_exception_records_sched", table_name="exception_records")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER exception_records_sched ON exception_records")
        op.execute("DROP FUNCTION exception_records_sched()")
    else:
        op.execute("DROP TRIGGER exception_records_sched_ins")
        op.execute("DROP TRIGGER exception_records_sched_upd")
    with op.batch_alter_table("exception_records") as batch:
        batch.drop_column("sched_at")
        batch.drop_column("priority")
