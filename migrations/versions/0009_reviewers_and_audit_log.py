"""Reviewers with keys of their own (`reviewers`, core/reviewers.py) in place of the tenant's
one shared reviewer key, review sessions tied to a reviewer, and the append-only audit log
(`audit_log`, core/audit.py).

The shared key cannot become a person: its sessions end here (signed-in pages go back to
sign-in), and an operator adds each reviewer (`enrichment reviewer add TENANT NAME`).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 20:05:00
"""

import sqlalchemy as sa
from alembic import op

from enrichment.core.models import JSONType, UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

APPEND_ONLY = "audit_log is append-only: its rows cannot be changed or deleted"


def upgrade() -> None:
    op.create_table(
        "reviewers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("key_hash", sa.String(length=128), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_reviewers_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviewers")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_reviewers_key_hash")),
    )
    op.create_index(
        "ux_reviewers_tenant_id_name_active",
        "reviewers",
        ["tenant_id", "name"],
        unique=True,
        postgresql_where=sa.text("revoked_at IS NULL"),
        sqlite_where=sa.text("revoked_at IS NULL"),
    )
    op.execute("DELETE FROM review_sessions")  # made with the shared key: they end here
    with op.batch_alter_table("review_sessions") as batch:
        batch.add_column(sa.Column("reviewer_id", sa.Integer(), nullable=False))
        batch.create_foreign_key(
            op.f("fk_review_sessions_reviewer_id_reviewers"), "reviewers", ["reviewer_id"], ["id"]
        )
        batch.drop_column("key_mark")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("reviewer_key_hash")

    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=48), nullable=False),
        sa.Column("subject", sa.String(length=256), nullable=True),
        sa.Column("details", JSONType, nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_audit_log_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_tenant_id_id", "audit_log", ["tenant_id", "id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""
            CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END $$;
            CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
            FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
            """
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
            )


def downgrade() -> None:
    op.drop_table("audit_log")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION audit_log_append_only()")
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("reviewer_key_hash", sa.String(length=128), nullable=True))
    op.execute("DELETE FROM review_sessions")
    with op.batch_alter_table("review_sessions") as batch:
        batch.add_column(sa.Column("key_mark", sa.String(length=64), nullable=False))
        batch.drop_constraint(op.f("fk_review_sessions_reviewer_id_reviewers"), type_="foreignkey")
        batch.drop_column("reviewer_id")
    op.drop_index("ux_reviewers_tenant_id_name_active", table_name="reviewers")
    op.drop_table("reviewers")
