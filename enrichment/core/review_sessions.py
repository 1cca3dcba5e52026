"""The review page's sessions and sign-in refusals, kept in the database so every API
process shares them (the embedded default has no Redis).

A session row's id is the SHA-256 of a random token that only the person's cookie carries,
so the table alone opens nothing. A session ends at logout (`ended_at`), when it is not seen
for `idle_s`, `session_s` after sign-in, or when its reviewer is revoked (core/reviewers.py
ends the rows at once; `find` checks the reviewer too). `last_seen_at` is written at most
once a minute.

Refusals (wrong keys) are counted per client address (across tenants: one address guessing
many tenants is still one guesser) and per tenant, over a sliding window; at the limit,
sign-in is refused without checking the key until the window's oldest counted refusal leaves.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, Index, String, delete, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from enrichment.core.models import Base, UTCDateTime
from enrichment.core.reviewers import Reviewer
from enrichment.core.settings_sections import ReviewConfig

SEEN_EVERY_S = 60.0  # last_seen_at is written at most this often: reads stay reads
ADDRESS, TENANT = "address", "tenant"
METRIC_WINDOW_S = 300.0  # refusals are kept at least this long, for the metric's look-back


class ReviewSession(Base):
    """One signed-in reviewer on one tenant's review page."""

    __tablename__ = "review_sessions"
    __table_args__ = (Index("ix_review_sessions_tenant_id_created_at", "tenant_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256(token), hex
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("reviewers.id"))
    reviewer: Mapped[str] = mapped_column(String(64))  # the reviewer's name, for the page
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SigninRefusal(Base):
    """One refused sign-in (a wrong key); tenant_id None: a tenant that does not exist."""

    __tablename__ = "signin_refusals"
    __table_args__ = (
        Index("ix_signin_refusals_address_refused_at", "address", "refused_at"),
        Index("ix_signin_refusals_tenant_id_refused_at", "tenant_id", "refused_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"))
    address: Mapped[str] = mapped_column(String(64))
    refused_at: Mapped[datetime] = mapped_column(UTCDateTime)


def token_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start(s: Session, reviewer: Reviewer, *, now: datetime) -> str:
    """A new session; returns its token (for the cookie only: the row keeps its hash)."""
    token = secrets.token_urlsafe(32)
    s.add(
        ReviewSession(
            id=token_id(token), tenant_id=reviewer.tenant_id, reviewer_id=reviewer.id,
            reviewer=reviewer.name, created_at=now, last_seen_at=now,
        )
    )  # fmt: skip
    return token


def find(
    s: Session, tenant_id: int, token: str, *, now: datetime, limits: ReviewConfig
) -> ReviewSession | None:
    """The tenant's live session for `token`, its last_seen_at moved on if a minute passed
    (the caller commits); None if ended, idle, too old, or its reviewer was revoked."""
    row = s.scalar(
        select(ReviewSession)
        .join(Reviewer, Reviewer.id == ReviewSession.reviewer_id)
        .where(
            ReviewSession.id == token_id(token),
            ReviewSession.tenant_id == tenant_id,
            ReviewSession.ended_at.is_(None),
            Reviewer.revoked_at.is_(None),
        )
    )
    if row is None:
        return None
    idle_s = (now - row.last_seen_at).total_seconds()
    if idle_s > limits.idle_s or (now - row.created_at).total_seconds() > limits.session_s:
        return None
    if idle_s >= SEEN_EVERY_S:
        row.last_seen_at = now
    return row


def end(s: Session, tenant_id: int, token: str, *, now: datetime) -> bool:
    """End one session at once (logout); False if it had ended already."""
    ended = s.execute(
        update(ReviewSession)
        .where(
            ReviewSession.id == token_id(token),
            ReviewSession.tenant_id == tenant_id,
            ReviewSession.ended_at.is_(None),
        )
        .values(ended_at=now)
    )
    return ended.rowcount > 0


def prune(s: Session, tenant_id: int, *, now: datetime, limits: ReviewConfig) -> None:
    """Forget the tenant's sessions past the absolute limit (nothing can revive them)."""
    old = now - timedelta(seconds=limits.session_s)
    s.execute(
        delete(ReviewSession).where(
            ReviewSession.tenant_id == tenant_id, ReviewSession.created_at < old
        )
    )


@dataclass(frozen=True)
class Lockout:
    """Sign-in is paused for `by` (ADDRESS or TENANT) for `retry_after_s` more seconds."""

    by: str
    retry_after_s: int


def lockout(
    s: Session, tenant_id: int | None, address: str, *, now: datetime, limits: ReviewConfig
) -> Lockout | None:
    """Whether sign-in is paused for this address or this tenant, and for how long."""
    scopes = (
        (ADDRESS, SigninRefusal.address == address, limits.signin_address_max),
        (TENANT, _tenant_is(tenant_id), limits.signin_tenant_max),
    )
    for by, where, most in scopes:
        left_s = _left_s(s, where, most, now=now, window_s=limits.signin_window_s)
        if left_s is not None and left_s > 0:
            return Lockout(by, max(1, math.ceil(left_s)))
    return None


def refuse(
    s: Session, tenant_id: int | None, address: str, *, now: datetime, limits: ReviewConfig
) -> Lockout | None:
    """Count one refusal; the lockout it starts, if it reached a limit (a burst)."""
    s.execute(
        delete(SigninRefusal).where(
            _tenant_is(tenant_id),
            SigninRefusal.refused_at < now - timedelta(seconds=_kept_s(limits)),
        )
    )
    s.add(SigninRefusal(tenant_id=tenant_id, address=address[:64], refused_at=now))
    s.flush()
    return lockout(s, tenant_id, address, now=now, limits=limits)


def _kept_s(limits: ReviewConfig) -> float:
    return max(limits.signin_window_s, METRIC_WINDOW_S)


def _tenant_is(tenant_id: int | None):
    if tenant_id is None:
        return SigninRefusal.tenant_id.is_(None)
    return SigninRefusal.tenant_id == tenant_id


def _left_s(s: Session, where, most: int, *, now: datetime, window_s: float) -> float | None:
    """Seconds until fewer than `most` refusals stay in the window (None: already fewer):
    the `most`-th newest refusal in the window is the one that has to leave it."""
    nth = s.scalar(
        select(SigninRefusal.refused_at)
        .where(where, SigninRefusal.refused_at > now - timedelta(seconds=window_s))
        .order_by(SigninRefusal.refused_at.desc())
        .offset(most - 1)
        .limit(1)
    )
    return None if nth is None else window_s - (now - nth).total_seconds()
