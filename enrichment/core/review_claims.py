"""Claims on queued records: a reviewer who opens a record holds it for a while
(ENRICHMENT_REVIEW_CLAIM_S), so two people do not work the same record at once.

One row per record (`review_claims`). Taking a claim is one upsert that succeeds only when
the record is free, its claim has run out, or the claim is already the same reviewer's (then
it is renewed), so two reviewers opening a record together cannot both hold it. A decision,
a requeue or a release deletes the row; an expired row is simply ignored (and replaced by
the next claim).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import ForeignKey, Index, String, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from enrichment.core.models import Base, UTCDateTime


class ReviewClaim(Base):
    """A reviewer's hold on one queued record, until `claimed_until`."""

    __tablename__ = "review_claims"
    __table_args__ = (Index("ix_review_claims_tenant_id", "tenant_id"),)

    record_id: Mapped[int] = mapped_column(
        ForeignKey("exception_records.id", ondelete="CASCADE"), primary_key=True
    )
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    reviewer: Mapped[str] = mapped_column(String(64))  # the reviewer's name
    claimed_until: Mapped[datetime] = mapped_column(UTCDateTime)


class Claim(NamedTuple):
    reviewer: str
    until: datetime


def claim(
    s: Session, tenant_id: int, record_id: int, reviewer: str, *, now: datetime, claim_s: float
) -> Claim:
    """Hold the record for `reviewer` for `claim_s` from `now`, unless another reviewer's
    claim is still running; returns whoever holds it afterwards (the caller commits)."""
    C = ReviewClaim
    until = now + timedelta(seconds=claim_s)
    dialect = postgresql if s.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(C).values(
        record_id=record_id, tenant_id=tenant_id, reviewer=reviewer, claimed_until=until
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[C.record_id],
        set_={"reviewer": reviewer, "claimed_until": until},
        where=(C.reviewer == reviewer) | (C.claimed_until <= now),
    )
    s.execute(stmt)
    held = holder(s, tenant_id, record_id, now=now)
    assert held is not None  # the row exists: this reviewer's, or a live one of another's
    return held


def holder(s: Session, tenant_id: int, record_id: int, *, now: datetime) -> Claim | None:
    """Who holds the record now (None: free, or the claim ran out)."""
    return holders(s, tenant_id, [record_id], now=now).get(record_id)


def holders(
    s: Session, tenant_id: int, record_ids: Iterable[int], *, now: datetime
) -> dict[int, Claim]:
    """The live claims on these records of the tenant's (record id -> claim), in one query."""
    C = ReviewClaim
    rows = s.execute(
        select(C.record_id, C.reviewer, C.claimed_until).where(
            C.tenant_id == tenant_id, C.record_id.in_(list(record_ids)), C.claimed_until > now
        )
    )
    return {record_id: Claim(reviewer, until) for record_id, reviewer, until in rows}


def taken_by_other(
    s: Session, tenant_id: int, record_id: int, reviewer: str, *, now: datetime
) -> Claim | None:
    """The live claim of someone other than `reviewer` on the record, if any."""
    held = holder(s, tenant_id, record_id, now=now)
    return held if held is not None and held.reviewer != reviewer else None


def release(s: Session, tenant_id: int, record_id: int, reviewer: str | None = None) -> bool:
    """Free the record (only `reviewer`'s claim when given); True if a claim was deleted."""
    C = ReviewClaim
    stmt = delete(C).where(C.tenant_id == tenant_id, C.record_id == record_id)
    if reviewer is not None:
        stmt = stmt.where(C.reviewer == reviewer)
    return bool(s.execute(stmt).rowcount)
