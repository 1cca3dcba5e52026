"""Calibration learned from reviews (issue 24): `calibration_maps` (one versioned isotonic map
per tenant and source, every version kept), each record's calibrated confidence with the map's
version and its audit sampling probability (copied to its review), and the monitor's rolling
error rate of automated decisions with its interval (`metric_snapshots.auto_error_*`).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 20:35:00
"""

import sqlalchemy as sa
from alembic import op

from enrichment.core.models import JSONType, UTCDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "calibration_maps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("prompt_version", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("breakpoints", JSONType, nullable=False),
        sa.Column("reviews", sa.Integer(), nullable=False),
        sa.Column("fitted_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_calibration_maps_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calibration_maps")),
        sa.UniqueConstraint(
            "tenant_id",
            "provider",
            "model",
            "prompt_version",
            "version",
            name="uq_calibration_maps_source_version",
        ),
    )
    # Not a batch: SQLite's copy of the table would lose its triggers (0005).
    for column in (
        sa.Column("ai_calibrated_confidence", sa.Float(), nullable=True),
        sa.Column("calibration_version", sa.Integer(), nullable=True),
        sa.Column("sampling_probability", sa.Float(), nullable=True),
    ):
        op.add_column("exception_records", column)
    op.add_column("reviews", sa.Column("sampling_probability", sa.Float(), nullable=True))
    with op.batch_alter_table("metric_snapshots") as batch:
        batch.add_column(
            sa.Column("auto_reviews", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("auto_error_pct", sa.Float(), nullable=True))
        batch.add_column(sa.Column("auto_error_low_pct", sa.Float(), nullable=True))
        batch.add_column(sa.Column("auto_error_high_pct", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("metric_snapshots") as batch:
        for name in ("auto_error_high_pct", "auto_error_low_pct", "auto_error_pct", "auto_reviews"):
            batch.drop_column(name)
    # In place (SQLite 3.35+): these columns are in no index.
    op.drop_column("reviews", "sampling_probability")
    for name in ("sampling_probability", "calibration_version", "ai_calibrated_confidence"):
        op.drop_column("exception_records", name)
    op.drop_table("calibration_maps")
