"""Fault isolation: the provider breakers (`provider_breakers`) and each attempt's fault
cause (`enrichment_attempts.fault`, core/faults.py).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 14:30:00
"""

import sqlalchemy as sa
from alembic import op

from enrichment.core.models import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "provider_breakers",
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("cause", sa.String(length=32), nullable=True),
        sa.Column("opened_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("probe_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("probe_interval_s", sa.Float(), nullable=False),
        sa.Column("probe_record_id", sa.Integer(), nullable=True),
        sa.Column("closed_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("page_open", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("provider", "model", name=op.f("pk_provider_breakers")),
    )
    with op.batch_alter_table("enrichment_attempts") as batch:
        batch.add_column(sa.Column("fault", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("enrichment_attempts") as batch:
        batch.drop_column("fault")
    op.drop_table("provider_breakers")
