"""The review queue's page at scale (issue 26): `ix_exception_records_review_due` over the
queued records (REVIEW_SQL), keyed (tenant_id, severity class, waiting start, id) - the
class being the severity, an unknown one counting as medium - and INCLUDing what the queue's
count and filters read. The deadline is the waiting start plus the class's limit, so within a
class the waiting order is the deadline order: the queue reads the first page of each class
from this index and merges them (enrichment/reviews/queue.py) instead of sorting the tenant's
whole queue. SQLite has no INCLUDE: the index there has the keys alone.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07 00:15:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

REVIEW = (
    "reviewed_at IS NULL AND (escalated_at IS NOT NULL OR (enriched_at IS NOT NULL"
    " AND (audit_sample OR approval_requested_at IS NOT NULL)))"
)
CLASS = (
    "(CASE severity WHEN 'critical' THEN 'critical' WHEN 'high' THEN 'high'"
    " WHEN 'low' THEN 'low' ELSE 'medium' END)"
)  # the severity class: an unknown severity (or none) counts as medium
WAITING_SINCE = "coalesce(escalated_at, approval_requested_at, enriched_at)"


def upgrade() -> None:
    op.create_index(
        "ix_exception_records_review_due",
        "exception_records",
        ["tenant_id", sa.text(CLASS), sa.text(WAITING_SINCE), "id"],
        postgresql_include=[
            "severity",
            "escalated_at",
            "approval_requested_at",
            "enriched_at",
            "ai_label",
        ],
        postgresql_where=sa.text(REVIEW),
        sqlite_where=sa.text(REVIEW),
    )


def downgrade() -> None:
    op.drop_index("ix_exception_records_review_due", table_name="exception_records")
