"""A tenant can be disabled (`tenants.disabled_at`): the claim skips its records and its API
key and reviewers are refused, while its data stays (`enrichment tenant disable|enable`).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 09:00:00
"""

import sqlalchemy as sa
from alembic import op

from enrichment.core.models import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("disabled_at", UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("disabled_at")
