"""A tenant's webhook delivery log: one row per POST (an outbox event's attempt, or a
`webhook.test`), newest kept, `KEEP_PER_TENANT` at most (the delivery run prunes).

A row holds the event id and type, when, the outcome, the HTTP status or the error's class,
and how long the POST took: never the URL, the secret, the body or the receiver's answer.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from enrichment.core.models import Base, UTCDateTime, utcnow

# Enough for a day of a busy tenant's failures to be read back; bounded, so it never grows.
KEEP_PER_TENANT = 1000
MAX_PAGE = 500
TEST_EVENT = "webhook.test"


class WebhookDelivery(Base):
    """One POST to a tenant's webhook."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_tenant", "tenant_id", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True
    )
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    # NULL for a `webhook.test`: it is never an outbox event.
    event_id: Mapped[int | None] = mapped_column(BigInteger)
    event_type: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    # delivered, retried, stopped, dead, lost (the claim had moved on) or test.
    outcome: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(200))
    duration_ms: Mapped[int | None] = mapped_column(Integer)


class DeliveryItem(BaseModel):
    """One delivery attempt as the API and the CLI show it."""

    id: int
    at: datetime
    event_id: int | None = Field(description="the outbox event (webhook-id evt_<id>); null "
                                 "for a webhook.test")  # fmt: skip
    event_type: str
    outcome: str = Field(description="delivered, retried, stopped, dead, lost or test")
    status_code: int | None = Field(description="the receiver's HTTP status, if it answered")
    error: str | None = Field(description="HTTP <status> or the network error's class")
    duration_ms: int | None


def add(
    s: Session,
    tenant_id: int,
    event_type: str,
    outcome: str,
    *,
    event_id: int | None = None,
    status_code: int | None = None,
    error: str | None = None,
    duration_s: float | None = None,
    now: datetime | None = None,
) -> None:
    """Add one row to the caller's transaction (it commits with the answer it describes)."""
    s.add(
        WebhookDelivery(
            tenant_id=tenant_id, event_id=event_id, event_type=event_type[:64],
            at=now or utcnow(), outcome=outcome, status_code=status_code,
            error=None if error is None else error[:200],
            duration_ms=None if duration_s is None else round(duration_s * 1000),
        )
    )  # fmt: skip


def prune(s: Session, tenant_id: int, *, keep: int = KEEP_PER_TENANT) -> int:
    """Delete the tenant's rows older than its `keep` newest; returns how many."""
    W = WebhookDelivery
    # The keep-th newest id (NULL while there are fewer rows: `id < NULL` deletes nothing).
    cutoff = (
        select(W.id).where(W.tenant_id == tenant_id).order_by(W.id.desc()).offset(keep - 1)
    ).limit(1)
    stmt = delete(W).where(W.tenant_id == tenant_id, W.id < cutoff.scalar_subquery())
    return s.execute(stmt.execution_options(synchronize_session=False)).rowcount


def recent(s: Session, tenant_id: int, *, limit: int = 50) -> list[DeliveryItem]:
    """The tenant's newest attempts, newest first, at most `limit` (up to MAX_PAGE)."""
    W = WebhookDelivery
    q = select(W).where(W.tenant_id == tenant_id).order_by(W.id.desc())
    return [
        DeliveryItem(
            id=r.id, at=r.at, event_id=r.event_id, event_type=r.event_type, outcome=r.outcome,
            status_code=r.status_code, error=r.error, duration_ms=r.duration_ms,
        )
        for r in s.scalars(q.limit(max(1, min(limit, MAX_PAGE))))
    ]  # fmt: skip
