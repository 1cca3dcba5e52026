"""Create tenants, orders, exception_records, enrichment_attempts and resolution_actions.

Revision ID: 0001
Revises:
Create Date: 2026-11-25 23:45:46.148465
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from enrichment.core.models import UTCDateTime

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "tenants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("confidence_threshold", sa.Float(), nullable=False),
        sa.Column("settings", JSON_TYPE, nullable=False),
        sa.Column("api_key_hash", sa.String(length=128), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
        sa.UniqueConstraint("name", name=op.f("uq_tenants_name")),
    )
    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("payload", JSON_TYPE, nullable=False),
        sa.Column("events", JSON_TYPE, nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_orders_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("tenant_id", "external_id", name=op.f("uq_orders_tenant_id")),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_orders_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "exception_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("reason_code", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("reference_label", sa.String(length=32), nullable=True),
        sa.Column("ai_label", sa.String(length=32), nullable=True),
        sa.Column("ai_confidence", sa.Float(), nullable=True),
        sa.Column("ai_notes", sa.Text(), nullable=True),
        sa.Column("ai_analysis", JSON_TYPE, nullable=True),
        sa.Column("ai_resolution", JSON_TYPE, nullable=True),
        sa.Column("ai_source", JSON_TYPE, nullable=False),
        sa.Column("enrichment_state", JSON_TYPE, nullable=False),
        sa.Column(
            "last_enrichment_attempt",
            UTCDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column("enrichment_retry_count", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("lease_token", sa.String(length=36), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("enriched_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("escalated_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("escalation_reason", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_exception_records_order_id_orders")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_exception_records_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exception_records")),
        sa.UniqueConstraint(
            "tenant_id", "external_id", name=op.f("uq_exception_records_tenant_id")
        ),
    )
    with op.batch_alter_table("exception_records", schema=None) as batch_op:
        batch_op.create_index(
            "idx_enrichment_due",
            ["next_attempt_at"],
            unique=False,
            postgresql_where=sa.text("escalated_at IS NULL AND enriched_at IS NULL"),
            sqlite_where=sa.text("escalated_at IS NULL AND enriched_at IS NULL"),
        )
        batch_op.create_index(
            "idx_enrichment_pending",
            ["tenant_id"],
            unique=False,
            postgresql_where=sa.text("ai_confidence IS NULL OR ai_label IS NULL"),
        )
        batch_op.create_index(
            "idx_enrichment_retry",
            ["tenant_id"],
            unique=False,
            postgresql_where=sa.text("enrichment_retry_count > 0 AND enrichment_retry_count < 5"),
        )
        batch_op.create_index(
            batch_op.f("ix_exception_records_order_id"), ["order_id"], unique=False
        )
        batch_op.create_index(
            "ix_exception_records_tenant_created", ["tenant_id", "created_at"], unique=False
        )

    op.create_table(
        "enrichment_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("latency_s", sa.Float(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=True),
        sa.Column("prompt_version", sa.String(length=32), nullable=True),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("cache_write_tokens", sa.Integer(), nullable=False),
        sa.Column("cache_read_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("lease_token", sa.String(length=36), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["exception_records.id"],
            name=op.f("fk_enrichment_attempts_record_id_exception_records"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_enrichment_attempts_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrichment_attempts")),
    )
    with op.batch_alter_table("enrichment_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_enrichment_attempts_record_id"), ["record_id"], unique=False
        )
        batch_op.create_index(
            "ix_enrichment_attempts_tenant_created", ["tenant_id", "created_at"], unique=False
        )

    op.create_table(
        "resolution_actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=48), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["exception_records.id"],
            name=op.f("fk_resolution_actions_record_id_exception_records"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_resolution_actions_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resolution_actions")),
        sa.UniqueConstraint("record_id", "action", name=op.f("uq_resolution_actions_record_id")),
    )
    with op.batch_alter_table("resolution_actions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_resolution_actions_tenant_id"), ["tenant_id"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("resolution_actions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_resolution_actions_tenant_id"))

    op.drop_table("resolution_actions")
    with op.batch_alter_table("enrichment_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_enrichment_attempts_tenant_created")
        batch_op.drop_index(batch_op.f("ix_enrichment_attempts_record_id"))

    op.drop_table("enrichment_attempts")
    with op.batch_alter_table("exception_records", schema=None) as batch_op:
        batch_op.drop_index("ix_exception_records_tenant_created")
        batch_op.drop_index(batch_op.f("ix_exception_records_order_id"))
        batch_op.drop_index(
            "idx_enrichment_retry",
            postgresql_where=sa.text("enrichment_retry_count > 0 AND enrichment_retry_count < 5"),
        )
        batch_op.drop_index(
            "idx_enrichment_pending",
            postgresql_where=sa.text("ai_confidence IS NULL OR ai_label IS NULL"),
        )
        batch_op.drop_index(
            "idx_enrichment_due",
            postgresql_where=sa.text("escalated_at IS NULL AND enriched_at IS NULL"),
            sqlite_where=sa.text("escalated_at IS NULL AND enriched_at IS NULL"),
        )

    op.drop_table("exception_records")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_orders_tenant_id"))

    op.drop_table("orders")
    op.drop_table("tenants")
