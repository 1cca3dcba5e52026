"""The Message Batches tables: one row per batch sent to the AI, one per record in it.

A batch is durable here before it is sent (status "submitting"), so a crash at any point
leaves a row that says what to do: "submitting" rows the create call never confirmed are
given up and their records released; "in_progress" rows are polled; "ended" rows have
results to apply; "applied" rows are done. A record's result is applied once: its
`batch_records.applied_at` is set in the same transaction as the stage's write.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from enrichment.core.models import Base, UTCDateTime, utcnow

SUBMITTING, IN_PROGRESS, ENDED, APPLIED, GIVEN_UP = (
    "submitting", "in_progress", "ended", "applied", "given_up",
)  # fmt: skip


class Batch(Base):
    __tablename__ = "batches"
    __table_args__ = (Index("ix_batches_status", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    # The provider's id (msgbatch_...), set once the create call returned.
    provider_batch_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    stage: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    requests: Mapped[int] = mapped_column(Integer)
    succeeded: Mapped[int] = mapped_column(Integer, default=0)
    errored: Mapped[int] = mapped_column(Integer, default=0)
    expired: Mapped[int] = mapped_column(Integer, default=0)
    canceled: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class BatchRecord(Base):
    """One record's request in a batch: the lease and stage stamp its result must match."""

    __tablename__ = "batch_records"
    __table_args__ = (UniqueConstraint("batch_id", "custom_id"),)

    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"), primary_key=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("exception_records.id"), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    custom_id: Mapped[str] = mapped_column(String(64))
    lease_token: Mapped[str] = mapped_column(String(36))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
