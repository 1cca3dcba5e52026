"""Server-side review page sessions (`review_sessions`) and the sign-in refusals that
throttle guessing (`signin_refusals`), core/review_sessions.py.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 18:40:00
"""

import sqlalchemy as sa
from alembic import op

from enrichment.core.models import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("reviewer", sa.String(length=64), nullable=False),
        sa.Column("key_mark", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_review_sessions_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_sessions")),
    )
    op.create_index(
        "ix_review_sessions_tenant_id_created_at", "review_sessions", ["tenant_id", "created_at"]
    )
    op.create_table(
        "signin_refusals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("refused_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_signin_refusals_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signin_refusals")),
    )
    op.create_index(
        "ix_signin_refusals_address_refused_at", "signin_refusals", ["address", "refused_at"]
    )
    op.create_index(
        "ix_signin_refusals_tenant_id_refused_at", "signin_refusals", ["tenant_id", "refused_at"]
    )


def downgrade() -> None:
    op.drop_table("signin_refusals")
    op.drop_table("review_sessions")
