"""Reviewers: the people who work a tenant's review queue, each with a key of their own.

An operator adds a reviewer by name (the CLI or the API) and hands over the key printed once;
only its SHA-256 is stored. The review page takes the reviewer's identity from the key used to
sign in, never from a typed name. Revoking a reviewer ends their sessions in the same
transaction, so a revoked reviewer's open page stops at its next request. A revoked name may
be added again (a new row, a new key); the old row stays, for the audit trail.
"""

from __future__ import annotations

import hmac
import re
import secrets
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import ForeignKey, Index, String, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from enrichment.core.models import Base, UTCDateTime, partial_where, utcnow
from enrichment.core.tenants import hash_key

# A name people read on decisions: printable, no control characters, 1-64 once stripped.
NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,64}$")
BAD_NAME = "a reviewer's name is 1 to 64 printable characters"


class Reviewer(Base):
    __tablename__ = "reviewers"
    __table_args__ = (
        # One active reviewer per name and tenant; revoked rows keep theirs.
        Index(
            "ux_reviewers_tenant_id_name_active",
            "tenant_id",
            "name",
            unique=True,
            **partial_where("revoked_at IS NULL"),
        ),  # fmt: skip
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(64))
    key_hash: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ReviewerOut(BaseModel):
    name: str
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: Reviewer) -> ReviewerOut:
        return cls(name=row.name, created_at=row.created_at, revoked_at=row.revoked_at)


class ReviewerError(ValueError):
    """A reviewer change refused, in one line; `status` is its HTTP answer."""

    status = 422


class UnknownReviewer(ReviewerError):
    status = 404


class NameTaken(ReviewerError):
    status = 409


def valid_name(name: str) -> str:
    name = name.strip()
    if not NAME.match(name):
        raise ReviewerError(BAD_NAME)
    return name


def add(
    s: Session, tenant_id: int, name: str, *, now: datetime | None = None
) -> tuple[Reviewer, str]:
    """Add an active reviewer called `name`; returns them and their key (the only time the
    key is seen)."""
    name = valid_name(name)
    if active(s, tenant_id, name) is not None:
        raise NameTaken(f"reviewer {name!r} exists; revoke it first for a new key")
    key = f"rev_{secrets.token_urlsafe(24)}"
    row = Reviewer(
        tenant_id=tenant_id, name=name, key_hash=hash_key(key), created_at=now or utcnow()
    )
    s.add(row)
    s.flush()
    return row, key


def revoke(s: Session, tenant_id: int, name: str, *, now: datetime | None = None) -> Reviewer:
    """Revoke the active reviewer `name` and end their review page sessions at once."""
    from enrichment.core.review_sessions import ReviewSession

    row = active(s, tenant_id, name.strip())
    if row is None:
        raise UnknownReviewer(f"no active reviewer {name.strip()!r}")
    now = now or utcnow()
    row.revoked_at = now
    s.execute(
        update(ReviewSession)
        .where(ReviewSession.reviewer_id == row.id, ReviewSession.ended_at.is_(None))
        .values(ended_at=now)
    )
    s.flush()
    return row


def active(s: Session, tenant_id: int, name: str) -> Reviewer | None:
    return s.scalar(
        select(Reviewer).where(
            Reviewer.tenant_id == tenant_id, Reviewer.name == name, Reviewer.revoked_at.is_(None)
        )
    )


def by_key(s: Session, tenant_id: int, key: str) -> Reviewer | None:
    """The tenant's active reviewer whose key this is; None for any other key."""
    if not key:
        return None
    digest = hash_key(key)
    row = s.scalar(
        select(Reviewer).where(
            Reviewer.tenant_id == tenant_id,
            Reviewer.key_hash == digest,
            Reviewer.revoked_at.is_(None),
        )
    )
    # The lookup is by an index; the comparison again in constant time, for form's sake.
    return row if row is not None and hmac.compare_digest(row.key_hash, digest) else None


def listing(s: Session, tenant_id: int, *, revoked: bool = False) -> list[ReviewerOut]:
    """The tenant's reviewers by name (the revoked ones too when asked)."""
    q = select(Reviewer).where(Reviewer.tenant_id == tenant_id)
    if not revoked:
        q = q.where(Reviewer.revoked_at.is_(None))
    return [ReviewerOut.of(r) for r in s.scalars(q.order_by(Reviewer.name, Reviewer.id))]
