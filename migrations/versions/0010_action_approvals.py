"""Approval for costly actions: a record's `approval_requested_at` (its actions of the tenant's
`approval_actions` wait AWAITING_APPROVAL for a person), the review queue's index over it, and
room in `resolution_actions.status` for the longer status names.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 20:30:00
"""

import sqlalchemy as sa
from alembic import op

from enrichment.core.models import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

MONITOR_INCLUDE = ["enriched_at", "escalated_at", "ai_confidence", "enrichment_retry_count",
                   "created_at", "reviewed_at", "audit_sample", "decided_by"]  # fmt: skip
# The migration's own copies of models.REVIEW_SQL, before and after (history never imports
# changing constants).
REVIEW_BEFORE = (
    "reviewed_at IS NULL AND (escalated_at IS NOT NULL"
    " OR (audit_sample AND enriched_at IS NOT NULL))"
)
REVIEW_AFTER = (
    "reviewed_at IS NULL AND (escalated_at IS NOT NULL OR (enriched_at IS NOT NULL"
    " AND (audit_sample OR approval_requested_at IS NOT NULL)))"
)


def _indexes(review: str, include: list[str]) -> None:
    op.create_index(
        "ix_exception_records_review",
        "exception_records",
        ["tenant_id", "escalated_at"],
        postgresql_where=sa.text(review),
        sqlite_where=sa.text(review),
    )
    # The monitor's covering index: its one pass reads what the queue's predicate reads.
    op.create_index(
        "ix_exception_records_monitor",
        "exception_records",
        ["tenant_id"],
        postgresql_include=include,
    )


def _drop_indexes() -> None:
    op.drop_index("ix_exception_records_review", table_name="exception_records")
    op.drop_index("ix_exception_records_monitor", table_name="exception_records")


def _status_length(before: int, after: int) -> None:
    """ "AWAITING_APPROVAL" is 17 characters. PostgreSQL: widening a varchar rewrites nothing.
    SQLite never enforces a length, and copying `resolution_actions` (a batch) would trip the
    outbox's foreign keys to it, so it keeps its declared one."""
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "resolution_actions",
            "status",
            existing_type=sa.String(length=before),
            type_=sa.String(length=after),
        )


def upgrade() -> None:
    _drop_indexes()
    op.add_column(
        "exception_records",
        sa.Column("approval_requested_at", UTCDateTime(timezone=True), nullable=True),
    )
    _indexes(REVIEW_AFTER, [*MONITOR_INCLUDE, "approval_requested_at"])
    _status_length(16, 24)


def downgrade() -> None:
    # Undecided approvals cannot be kept in the old schema: they are declined, never sent.
    op.execute(
        "UPDATE resolution_actions SET status = 'DECLINED' WHERE status = 'AWAITING_APPROVAL'"
    )
    _status_length(24, 16)
    _drop_indexes()
    # Not a batch: SQLite's copy of the table would lose its triggers (0005); the column is
    # in no index any more, so SQLite (3.35+) drops it in place.
    op.drop_column("exception_records", "approval_requested_at")
    _indexes(REVIEW_BEFORE, MONITOR_INCLUDE)
