"""Shadow answers: what a shadow variant of an experiment (or the local model under a
cascade) answered for a record, kept beside the live answer and never acted on
(`shadow_answers`; core/shadow_answers.py, issue 24).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 20:35:00
"""

import sqlalchemy as sa
from alembic import op

from enrichment.core.models import UTCDateTime

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shadow_answers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("variant", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=True),
        sa.Column("prompt_version", sa.String(length=32), nullable=True),
        sa.Column("label", sa.String(length=32), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("latency_s", sa.Float(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["exception_records.id"],
            name=op.f("fk_shadow_answers_record_id_exception_records"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_shadow_answers_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shadow_answers")),
    )
    op.create_index("ix_shadow_answers_tenant_variant", "shadow_answers", ["tenant_id", "variant"])
    op.create_index("ix_shadow_answers_record_id", "shadow_answers", ["record_id"])


def downgrade() -> None:
    op.drop_table("shadow_answers")
