"""Add the outbox (outbox_events), tenant webhooks, action delivery and outcome columns,
the attempts' audit detail, and the snapshot's event counts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 09:50:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from enrichment.core.models import UTCDateTime

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PENDING = "status = 'pending'"
OPEN = "status <> 'delivered'"


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    # The writing transaction's id orders the pull cursor; SQLite has one writer: 0.
    tx_default = sa.text("(pg_current_xact_id()::text::bigint)") if postgres else sa.text("0")
    op.add_column("tenants", sa.Column("webhook_url", sa.Text(), nullable=True))
    op.add_column("tenants", sa.Column("webhook_secret", sa.String(length=64), nullable=True))
    op.add_column("enrichment_attempts", sa.Column("detail", JSON_TYPE, nullable=True))
    op.add_column("resolution_actions", sa.Column("note", sa.Text(), nullable=True))
    op.add_column(
        "resolution_actions", sa.Column("delivered_at", UTCDateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "resolution_actions", sa.Column("reported_at", UTCDateTime(timezone=True), nullable=True)
    )
    for name in ("undelivered_events", "dead_events"):
        op.add_column(
            "metric_snapshots",
            sa.Column(name, sa.Integer(), nullable=False, server_default="0"),
        )
    op.create_table(
        "outbox_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("action_id", sa.Integer(), nullable=True),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("data", JSON_TYPE, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_delivery_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("tx", sa.BigInteger(), server_default=tx_default, nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["action_id"],
            ["resolution_actions.id"],
            name=op.f("fk_outbox_events_action_id_resolution_actions"),
        ),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["exception_records.id"],
            name=op.f("fk_outbox_events_record_id_exception_records"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_outbox_events_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_events")),
    )
    op.create_index(
        "ix_outbox_events_due",
        "outbox_events",
        ["next_delivery_at"],
        postgresql_where=sa.text(PENDING),
        sqlite_where=sa.text(PENDING),
    )
    op.create_index("ix_outbox_events_record", "outbox_events", ["record_id", "id"])
    op.create_index(
        "ix_outbox_events_open",
        "outbox_events",
        ["tenant_id", "status"],
        postgresql_where=sa.text(OPEN),
        sqlite_where=sa.text(OPEN),
    )
    op.create_index("ix_outbox_events_tenant_tx", "outbox_events", ["tenant_id", "tx", "id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_events_tenant_tx", table_name="outbox_events")
    op.drop_index("ix_outbox_events_open", table_name="outbox_events")
    op.drop_index("ix_outbox_events_record", table_name="outbox_events")
    op.drop_index("ix_outbox_events_due", table_name="outbox_events")
    op.drop_table("outbox_events")
    with op.batch_alter_table("metric_snapshots") as batch:
        batch.drop_column("dead_events")
        batch.drop_column("undelivered_events")
    with op.batch_alter_table("resolution_actions") as batch:
        batch.drop_column("reported_at")
        batch.drop_column("delivered_at")
        batch.drop_column("note")
    with op.batch_alter_table("enrichment_attempts") as batch:
        batch.drop_column("detail")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("webhook_secret")
        batch.drop_column("webhook_url")
