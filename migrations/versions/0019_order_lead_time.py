"""The order figures' indexes and the lead time (issue 25): two small partial indexes on
`exception_records` the monitor reads instead of the tenant's every record - the watches
(record_type 'order', covering enriched_at and escalated_at) and the raised exceptions (source
'ai_order_analyzer', on (tenant_id, attached_at) covering created_at: counts, and the latest
lead times by a backward range scan) - and two snapshot columns: problems_attached and
lead_time_median_s.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 22:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

WATCHES = "record_type = 'order'"
RAISED = "source = 'ai_order_analyzer'"


def upgrade() -> None:
    op.create_index(
        "ix_exception_records_watches",
        "exception_records",
        ["tenant_id"],
        postgresql_include=["enriched_at", "escalated_at"],
        postgresql_where=sa.text(WATCHES),
        sqlite_where=sa.text(WATCHES),
    )
    op.create_index(
        "ix_exception_records_raised",
        "exception_records",
        ["tenant_id", "attached_at"],
        postgresql_include=["created_at"],
        postgresql_where=sa.text(RAISED),
        sqlite_where=sa.text(RAISED),
    )
    with op.batch_alter_table("metric_snapshots") as batch:
        batch.add_column(
            sa.Column("problems_attached", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("lead_time_median_s", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("metric_snapshots") as batch:
        batch.drop_column("lead_time_median_s")
        batch.drop_column("problems_attached")
    op.drop_index("ix_exception_records_raised", table_name="exception_records")
    op.drop_index("ix_exception_records_watches", table_name="exception_records")
