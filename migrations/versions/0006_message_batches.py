"""Message Batches: the `batches` and `batch_records` tables, and the batch an attempt came
from (`enrichment_attempts.batch_id`; NULL for the interactive path).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 12:20:00
"""

import sqlalchemy as sa
from alembic import op

from enrichment.core.models import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("provider_batch_id", sa.String(length=128), nullable=True),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("succeeded", sa.Integer(), nullable=False),
        sa.Column("errored", sa.Integer(), nullable=False),
        sa.Column("expired", sa.Integer(), nullable=False),
        sa.Column("canceled", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("ended_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("applied_at", UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_batches_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
        sa.UniqueConstraint("provider_batch_id", name=op.f("uq_batches_provider_batch_id")),
    )
    op.create_index("ix_batches_status", "batches", ["status"])
    op.create_table(
        "batch_records",
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("custom_id", sa.String(length=64), nullable=False),
        sa.Column("lease_token", sa.String(length=36), nullable=False),
        sa.Column("started_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("applied_at", UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_batch_records_batch_id_batches")
        ),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["exception_records.id"],
            name=op.f("fk_batch_records_record_id_exception_records"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_batch_records_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("batch_id", "record_id", name=op.f("pk_batch_records")),
        sa.UniqueConstraint("batch_id", "custom_id", name=op.f("uq_batch_records_batch_id")),
    )
    op.add_column("enrichment_attempts", sa.Column("batch_id", sa.Integer(), nullable=True))
    op.add_column(
        "metric_snapshots",
        sa.Column("window_batch_ai_cost_usd", sa.Float(), nullable=False, server_default="0"),
    )
    op.add_column("metric_snapshots", sa.Column("cache_hit_pct", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("metric_snapshots") as batch:
        batch.drop_column("cache_hit_pct")
        batch.drop_column("window_batch_ai_cost_usd")
    with op.batch_alter_table("enrichment_attempts") as batch:
        batch.drop_column("batch_id")
    op.drop_table("batch_records")
    op.drop_index("ix_batches_status", table_name="batches")
    op.drop_table("batches")
