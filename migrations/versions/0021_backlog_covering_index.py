"""The backlog index covers what its counts filter on (issue 26, P3 at scale):
`ix_exception_records_backlog` (tenant_id, next_attempt_at) over the backlog now INCLUDEs
enrichment_retry_count, lease_expires_at and sched_at, and enriched_at and escalated_at (NULL
there, but the route's FILTERs name them, and an index-only scan needs every column a query
names), so the monitor's due-now count (`passes.due_counts`) and the backlog route's counts
(`reports.backlog`) are index-only scans instead of a heap page per waiting record (10M
records, a tenant with 600,000 waiting: the due count 2,249 ms -> 53 ms; docs/benchmarks.md).
SQLite has no INCLUDE: the index there stays as it was.

Revision ID: 0021
Revises: 0022
Create Date: 2026-12-06 23:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0022"
branch_labels = None
depends_on = None

BACKLOG = "enriched_at IS NULL AND escalated_at IS NULL"
NAME = "ix_exception_records_backlog"
COVERED = ["enrichment_retry_count", "lease_expires_at", "sched_at", "enriched_at", "escalated_at"]


def _create(include: list[str]) -> None:
    op.create_index(
        NAME,
        "exception_records",
        ["tenant_id", "next_attempt_at"],
        postgresql_include=include,
        postgresql_where=sa.text(BACKLOG),
        sqlite_where=sa.text(BACKLOG),
    )


def upgrade() -> None:
    op.drop_index(NAME, table_name="exception_records")
    _create(COVERED)


def downgrade() -> None:
    op.drop_index(NAME, table_name="exception_records")
    _create([])
