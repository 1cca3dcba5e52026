"""Webhooks never stop silently: the previous signing secret and its expiry on tenants (a
rotation's overlap), stopped events in the monitor's snapshots, and a bounded per-tenant log
of delivery attempts (`webhook_deliveries`).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 10:00:00
"""

import sqlalchemy as sa
from alembic import op

from enrichment.core.models import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("webhook_previous_secret", sa.String(64), nullable=True))
        batch.add_column(
            sa.Column("webhook_previous_until", UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("metric_snapshots") as batch:
        batch.add_column(
            sa.Column("stopped_events", sa.Integer(), nullable=False, server_default="0")
        )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=True),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(200), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
    )
    op.create_index("ix_webhook_deliveries_tenant", "webhook_deliveries", ["tenant_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_tenant", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("metric_snapshots") as batch:
        batch.drop_column("stopped_events")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("webhook_previous_until")
        batch.drop_column("webhook_previous_secret")
