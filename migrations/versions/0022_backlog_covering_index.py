"""The backlog's two indexes cover what their readers filter on (issue 26, P3 at scale):
`ix_exception_records_backlog` (tenant_id, next_attempt_at) over the backlog now INCLUDEs
enrichment_retry_count, lease_expires_at and sched_at, and enriched_at and escalated_at (NULL
there, but the route's FILTERs name them, and an index-only scan needs every column a query
names), so the monitor's due-now count (`passes.due_counts`) and the backlog route's counts
(`reports.backlog`) are index-only scans instead of a heap page per waiting record (10M
records, a tenant with 600,000 waiting: the due count 2,249 ms -> 53 ms; docs/benchmarks.md).
`ix_exception_records_sched` (tenant_id, sched_at), which the claim's demand walks per tenant
(`demand.py`: count and head of the first batch/8 due records), INCLUDEs the same columns and
next_attempt_at: the walk no longer reads a heap page per record (10M records, 100 tenants:
the demand statement 129-144 ms -> 10 ms). SQLite has no INCLUDE: the indexes there stay as
they were.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06 23:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

BACKLOG = "enriched_at IS NULL AND escalated_at IS NULL"
WAITING = ["enrichment_retry_count", "lease_expires_at", "enriched_at", "escalated_at"]
# name: (key columns, what upgrade INCLUDEs)
INDEXES = {
    "ix_exception_records_backlog": (["tenant_id", "next_attempt_at"], [*WAITING, "sched_at"]),
    "ix_exception_records_sched": (["tenant_id", "sched_at"], [*WAITING, "next_attempt_at"]),
}


def _create(name: str, columns: list[str], include: list[str]) -> None:
    op.drop_index(name, table_name="exception_records")
    op.create_index(
        name,
        "exception_records",
        columns,
        postgresql_include=include,
        postgresql_where=sa.text(BACKLOG),
        sqlite_where=sa.text(BACKLOG),
    )


def upgrade() -> None:
    for name, (columns, include) in INDEXES.items():
        _create(name, columns, include)


def downgrade() -> None:
    for name, (columns, _) in INDEXES.items():
        _create(name, columns, [])
