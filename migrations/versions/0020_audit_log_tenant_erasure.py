"""The audit log lets a tenant's removal delete its rows (issue 26, `enrichment erase TENANT
--all`): on PostgreSQL the append-only trigger lets a DELETE through when the
transaction-local setting `enrichment.erasing` is 'tenant' (history/tenant_removal.py sets
it with `set_config(..., true)`, for its own transaction only). UPDATE is still refused,
always. SQLite has no such setting: the removal drops the DELETE trigger and creates it again
inside its own transaction, so nothing changes here.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 23:30:00
"""

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

APPEND_ONLY = "audit_log is append-only: its rows cannot be changed or deleted"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' AND current_setting('enrichment.erasing', true) = 'tenant' THEN
                RETURN OLD;
            END IF;
            RAISE EXCEPTION '{APPEND_ONLY}';
        END $$;
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END $$;
        """
    )
