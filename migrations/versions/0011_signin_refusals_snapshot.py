"""The monitor's count of wrong reviewer keys in the last 5 min (`metric_snapshots.
signin_refusals`), which the signin_refusals_warning alert judges.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 21:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("metric_snapshots") as batch:
        batch.add_column(
            sa.Column("signin_refusals", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("metric_snapshots") as batch:
        batch.drop_column("signin_refusals")
