"""The indexes on the records that the monitor, the review queue, the claim and the backlog
route read, declared apart from their tables so that `models` stays a page of tables (it
imports this module at its end, so every index is on the metadata wherever a model is)."""

from __future__ import annotations

from sqlalchemy import Index, text

from enrichment.core.models import (
    BACKLOG_SQL,
    ORDER,
    RAISED_BY_AI,
    REVIEW_SQL,
    EnrichmentAttempt,
    ExceptionRecord,
    partial_where,
)

# Monitor indexes, declared here so the classes above stay as they are. The monitor counts
# records from tallies on PostgreSQL (core/tallies.py, migration 0024); what a tally cannot
# say it reads from these, each a window of a tenant's records, not its history: the records
# enriched in the window, and the records in the hundredth of confidence the threshold falls in.
Index(
    "ix_exception_records_enriched",
    ExceptionRecord.tenant_id,
    ExceptionRecord.enriched_at,
    postgresql_include=["created_at", "record_type"],
    **partial_where("enriched_at IS NOT NULL"),
)
Index(
    "ix_exception_records_confidence",
    ExceptionRecord.tenant_id,
    ExceptionRecord.ai_confidence,
    postgresql_include=["record_type"],
    **partial_where("ai_confidence IS NOT NULL"),
)
# The review queue of one tenant: a small set, read oldest first.
Index(
    "ix_exception_records_review",
    ExceptionRecord.tenant_id,
    ExceptionRecord.escalated_at,
    **partial_where(REVIEW_SQL),
)
# The review queue's page (reviews/queue.py): per severity class (an unknown severity counts
# as medium), a tenant's queued records in waiting order - the deadline's order within one
# class -, covering what the queue's count and filters read (migration 0023).
# Written as PostgreSQL prints it back (newlines included), so the drift check matches it.
REVIEW_CLASS_SQL = (
    "\nCASE severity\n    WHEN 'critical' THEN 'critical'\n    WHEN 'high' THEN 'high'"
    "\n    WHEN 'low' THEN 'low'\n    ELSE 'medium'\nEND"
)
Index(
    "ix_exception_records_review_due",
    ExceptionRecord.tenant_id,
    text(f"({REVIEW_CLASS_SQL})"),
    text("COALESCE(escalated_at, approval_requested_at, enriched_at)"),  # review_waiting_since
    ExceptionRecord.id,
    postgresql_include=[
        "severity",
        "escalated_at",
        "approval_requested_at",
        "enriched_at",
        "ai_label",
    ],
    **partial_where(REVIEW_SQL),
)
# The claim walks each tenant's waiting records in scheduling order (severity, priority, age);
# covering what the walk filters on, the demand is an index-only scan (migration 0022).
Index(
    "ix_exception_records_sched",
    ExceptionRecord.tenant_id,
    ExceptionRecord.sched_at,
    postgresql_include=[
        "enrichment_retry_count",
        "lease_expires_at",
        "enriched_at",
        "escalated_at",
        "next_attempt_at",
    ],
    **partial_where(BACKLOG_SQL),
)
# Records in flight per tenant (the in-flight cap): leases are few, so is this index.
Index(
    "ix_exception_records_leased",
    ExceptionRecord.tenant_id,
    **partial_where("lease_token IS NOT NULL"),
)
# The fleet's recent throughput (how much one sweep claims): attempts by time alone.
Index("ix_enrichment_attempts_created", EnrichmentAttempt.created_at)
# The backlog route lists one tenant's waiting records in due order; covering what its counts
# and the monitor's due count filter on, they are index-only scans (migration 0022).
Index(
    "ix_exception_records_backlog",
    ExceptionRecord.tenant_id,
    ExceptionRecord.next_attempt_at,
    postgresql_include=[
        "id",  # the route's next records by due time, index-only (migration 0024)
        "enrichment_retry_count",
        "lease_expires_at",
        "sched_at",
        "enriched_at",
        "escalated_at",
    ],
    **partial_where(BACKLOG_SQL),
)
# Orders as records (the monitor's order figures, metrics/passes.py): the watches, and what the
# order analysis raised with when a tenant's own exception attached (the lead time).
WATCHES_SQL, RAISED_SQL = f"record_type = '{ORDER}'", f"source = '{RAISED_BY_AI}'"
Index("ix_exception_records_watches", ExceptionRecord.tenant_id,
      postgresql_include=["enriched_at", "escalated_at"], **partial_where(WATCHES_SQL))  # fmt: skip
Index("ix_exception_records_raised", ExceptionRecord.tenant_id, ExceptionRecord.attached_at,
      postgresql_include=["created_at"], **partial_where(RAISED_SQL))  # fmt: skip
