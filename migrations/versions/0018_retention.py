"""Retention (issue 26): the pruner's counters per tenant and table (`prune_counts`, read by
`/metrics`), and two indexes: a tenant's outbox events oldest first (the pruner's walk), and
batch rows by record (whether a record is still referred to, and the foreign key's check
when one is removed; the primary key leads with the batch).

On PostgreSQL the indexes are built CONCURRENTLY (outside the migration's transaction), so
populated tables keep taking writes while they build.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 23:00:00
"""

import sqlalchemy as sa
from alembic import op

from enrichment.core.models import UTCDateTime

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_outbox_events_tenant_created", "outbox_events", ["tenant_id", "created_at"]),
    ("ix_batch_records_record_id", "batch_records", ["record_id"]),
)


def upgrade() -> None:
    op.create_table(
        "prune_counts",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("table_name", sa.String(length=64), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("pruned_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_prune_counts_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "table_name", name=op.f("pk_prune_counts")),
    )
    if op.get_bind().dialect.name != "postgresql":
        for name, table, columns in INDEXES:
            op.create_index(name, table, columns)
        return
    with op.get_context().autocommit_block():
        for name, table, columns in INDEXES:
            op.create_index(name, table, columns, postgresql_concurrently=True)


def downgrade() -> None:
    for name, table, _columns in INDEXES:
        op.drop_index(name, table_name=table)
    op.drop_table("prune_counts")
