"""Add metric_snapshots, alerts and alert_silences, and the monitor's two indexes.

The covering index lets the monitor's one aggregate pass per tenant run index-only on
PostgreSQL; the partial backlog index serves the backlog route (both dialects).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 23:49:01.448634
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from enrichment.core.models import UTCDateTime

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_silences",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=True),
        sa.Column("starts_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("ends_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_alert_silences_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_silences")),
    )
    op.create_index(
        "ix_alert_silences_tenant_ends", "alert_silences", ["tenant_id", "ends_at"], unique=False
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("consecutive", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("active_since", UTCDateTime(timezone=True), nullable=True),
        sa.Column("fired_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_notified_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("notifications_sent", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_alerts_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("tenant_id", "metric", "severity", name=op.f("uq_alerts_tenant_id")),
    )
    op.create_table(
        "metric_snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("taken_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("window_s", sa.Float(), nullable=False),
        sa.Column("total_records", sa.Integer(), nullable=False),
        sa.Column("enriched_records", sa.Integer(), nullable=False),
        sa.Column("backlog_records", sa.Integer(), nullable=False),
        sa.Column("escalated_records", sa.Integer(), nullable=False),
        sa.Column("classified_records", sa.Integer(), nullable=False),
        sa.Column("high_confidence_records", sa.Integer(), nullable=False),
        sa.Column("completeness_pct", sa.Float(), nullable=True),
        sa.Column("high_confidence_pct", sa.Float(), nullable=True),
        sa.Column("quality_score", sa.Float(), nullable=True),
        sa.Column("failure_rate_pct", sa.Float(), nullable=True),
        sa.Column("pipeline_success_pct", sa.Float(), nullable=True),
        sa.Column("records_per_hour", sa.Float(), nullable=False),
        sa.Column("avg_processing_time_s", sa.Float(), nullable=True),
        sa.Column("processing_duration_s", sa.Float(), nullable=False),
        sa.Column("time_to_enrich_s", sa.Float(), nullable=True),
        sa.Column("window_attempts", sa.Integer(), nullable=False),
        sa.Column("window_failed_attempts", sa.Integer(), nullable=False),
        sa.Column("window_chains", sa.Integer(), nullable=False),
        sa.Column("window_ai_cost_usd", sa.Float(), nullable=False),
        sa.Column("attempts_total", sa.Integer(), nullable=False),
        sa.Column("failed_attempts_total", sa.Integer(), nullable=False),
        sa.Column("ai_cost_usd_total", sa.Float(), nullable=False),
        sa.Column("processing_seconds_total", sa.Float(), nullable=False),
        sa.Column("confidence_buckets", JSON_TYPE, nullable=False),
        sa.Column("integrity", JSON_TYPE, nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_metric_snapshots_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metric_snapshots")),
    )
    op.create_index(
        "ix_metric_snapshots_tenant_taken",
        "metric_snapshots",
        ["tenant_id", "taken_at"],
        unique=False,
    )
    op.create_index(
        "ix_exception_records_backlog",
        "exception_records",
        ["tenant_id", "next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("enriched_at IS NULL AND escalated_at IS NULL"),
        sqlite_where=sa.text("enriched_at IS NULL AND escalated_at IS NULL"),
    )
    op.create_index(
        "ix_exception_records_monitor",
        "exception_records",
        ["tenant_id"],
        unique=False,
        postgresql_include=[
            "enriched_at",
            "escalated_at",
            "ai_confidence",
            "enrichment_retry_count",
            "created_at",
        ],
    )


def downgrade() -> None:
    op.drop_index(
        "ix_exception_records_monitor",
        table_name="exception_records",
        postgresql_include=[
            "enriched_at",
            "escalated_at",
            "ai_confidence",
            "enrichment_retry_count",
            "created_at",
        ],
    )
    op.drop_index(
        "ix_exception_records_backlog",
        table_name="exception_records",
        postgresql_where=sa.text("enriched_at IS NULL AND escalated_at IS NULL"),
        sqlite_where=sa.text("enriched_at IS NULL AND escalated_at IS NULL"),
    )
    op.drop_index("ix_metric_snapshots_tenant_taken", table_name="metric_snapshots")
    op.drop_table("metric_snapshots")
    op.drop_table("alerts")
    op.drop_index("ix_alert_silences_tenant_ends", table_name="alert_silences")
    op.drop_table("alert_silences")
