"""Add the review queue: reviews, the records' audit sample and people's decisions, the
reviewer key, and the snapshot's review counts.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 10:30:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from enrichment.core.models import UTCDateTime

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

MONITOR_INCLUDE = ["enriched_at", "escalated_at", "ai_confidence", "enrichment_retry_count",
                   "created_at"]  # fmt: skip
# The migration's own copy of models.REVIEW_SQL (history never imports changing constants).
REVIEW = (
    "reviewed_at IS NULL AND (escalated_at IS NOT NULL"
    " OR (audit_sample AND enriched_at IS NOT NULL))"
)


def upgrade() -> None:
    op.add_column("tenants", sa.Column("reviewer_key_hash", sa.String(length=128), nullable=True))
    records = [
        sa.Column("audit_sample", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("final_label", sa.String(length=32), nullable=True),
        sa.Column("final_actions", JSON_TYPE, nullable=True),
        sa.Column("decided_by", sa.String(length=16), nullable=True),
        sa.Column("reviewed_at", UTCDateTime(timezone=True), nullable=True),
    ]
    for column in records:
        op.add_column("exception_records", column)
    snapshots = [
        sa.Column("review_backlog", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("oldest_review_age_s", sa.Float(), nullable=True),
        sa.Column("human_resolved_records", sa.Integer(), nullable=False, server_default="0"),
    ]
    for column in snapshots:
        op.add_column("metric_snapshots", column)
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reviewer", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=32), nullable=False),
        sa.Column("actions", JSON_TYPE, nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("ai_label", sa.String(length=32), nullable=True),
        sa.Column("ai_confidence", sa.Float(), nullable=True),
        sa.Column("ai_source", JSON_TYPE, nullable=True),
        sa.Column("overrides", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["overrides"], ["reviews.id"], name=op.f("fk_reviews_overrides_reviews")
        ),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["exception_records.id"],
            name=op.f("fk_reviews_record_id_exception_records"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_reviews_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviews")),
    )
    op.create_index(op.f("ix_reviews_record_id"), "reviews", ["record_id"])
    op.create_index("ix_reviews_tenant_created", "reviews", ["tenant_id", "created_at"])
    # The monitor's covering index gains the review columns its one pass now reads.
    op.drop_index("ix_exception_records_monitor", table_name="exception_records")
    op.create_index(
        "ix_exception_records_monitor",
        "exception_records",
        ["tenant_id"],
        postgresql_include=[*MONITOR_INCLUDE, "reviewed_at", "audit_sample", "decided_by"],
    )
    op.create_index(
        "ix_exception_records_review",
        "exception_records",
        ["tenant_id", "escalated_at"],
        postgresql_where=sa.text(REVIEW),
        sqlite_where=sa.text(REVIEW),
    )


def downgrade() -> None:
    op.drop_index("ix_exception_records_review", table_name="exception_records")
    op.drop_index("ix_exception_records_monitor", table_name="exception_records")
    op.create_index(
        "ix_exception_records_monitor",
        "exception_records",
        ["tenant_id"],
        postgresql_include=MONITOR_INCLUDE,
    )
    op.drop_index("ix_reviews_tenant_created", table_name="reviews")
    op.drop_index(op.f("ix_reviews_record_id"), table_name="reviews")
    op.drop_table("reviews")
    with op.batch_alter_table("metric_snapshots") as batch:
        for name in ("human_resolved_records", "oldest_review_age_s", "review_backlog"):
            batch.drop_column(name)
    with op.batch_alter_table("exception_records") as batch:
        for name in ("reviewed_at", "decided_by", "final_actions", "final_label", "audit_sample"):
            batch.drop_column(name)
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("reviewer_key_hash")
