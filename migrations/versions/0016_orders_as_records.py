"""Orders as records (issue 25): `exception_records.record_type` ("exception", or "order": a
watched order whose only stage is order analysis), `source` (who raised an exception:
NULL for the tenant's own, "ai_order_analyzer" for one the order analysis raised) and
`attached_at` (when the tenant's own exception for the same order and problem attached to a
raised one); the monitor's covering index gains `record_type`, and each snapshot counts the
orders watched and analysed and the problems raised.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 20:40:00
"""

import sqlalchemy as sa
from alembic import op

from enrichment.core.models import UTCDateTime

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


MONITOR_INCLUDE = ["enriched_at", "escalated_at", "ai_confidence", "enrichment_retry_count",
                   "created_at", "reviewed_at", "audit_sample", "decided_by",
                   "approval_requested_at"]  # fmt: skip
SNAPSHOT_COUNTS = ("orders_watched", "orders_analysed", "problems_raised")


def _monitor_index(include: list[str]) -> None:
    # PostgreSQL only: the include list is what makes the monitor's pass an index-only scan.
    op.drop_index("ix_exception_records_monitor", table_name="exception_records")
    op.create_index(
        "ix_exception_records_monitor",
        "exception_records",
        ["tenant_id"],
        postgresql_include=include,
    )


def upgrade() -> None:
    # Plain ADD COLUMNs (no table copy on SQLite: the outbox's foreign keys point here).
    op.add_column(
        "exception_records",
        sa.Column("record_type", sa.String(length=16), nullable=False, server_default="exception"),
    )
    op.add_column("exception_records", sa.Column("source", sa.String(length=32), nullable=True))
    op.add_column(
        "exception_records", sa.Column("attached_at", UTCDateTime(timezone=True), nullable=True)
    )
    # The monitor's pass counts exceptions only (record_type in its covering index); the
    # order figures of each snapshot.
    _monitor_index([*MONITOR_INCLUDE, "record_type"])
    with op.batch_alter_table("metric_snapshots") as batch:
        for name in SNAPSHOT_COUNTS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("metric_snapshots") as batch:
        for name in reversed(SNAPSHOT_COUNTS):
            batch.drop_column(name)
    _monitor_index(MONITOR_INCLUDE)
    # Plain DROP COLUMNs: a batch copy would lose the table's triggers (migration 0005).
    for name in ("attached_at", "source", "record_type"):
        op.drop_column("exception_records", name)
