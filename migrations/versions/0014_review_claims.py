"""Review claims: a reviewer holds a queued record for a while (`review_claims`, one row per
record; core/review_claims.py), so two people do not work the same record.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 20:15:00
"""

import sqlalchemy as sa
from alembic import op

from enrichment.core.models import UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_claims",
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("reviewer", sa.String(length=64), nullable=False),
        sa.Column("claimed_until", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["exception_records.id"],
            name=op.f("fk_review_claims_record_id_exception_records"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_review_claims_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("record_id", name=op.f("pk_review_claims")),
    )
    op.create_index("ix_review_claims_tenant_id", "review_claims", ["tenant_id"])


def downgrade() -> None:
    op.drop_table("review_claims")
