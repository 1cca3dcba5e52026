"""The audit log: who did what, when, per tenant; append-only.

Every change a person or an integration makes is one row, written in the transaction that
makes the change (so the row exists exactly when the change does): key rotations, reviewers
added and revoked, webhook changes, review sign-ins, sign-outs and refused keys, reviews,
approvals, requeues and redeliveries. The database refuses to update or delete a row (a
trigger, on PostgreSQL and SQLite alike, migration 0009).

`actor` names who: `reviewer:<name>` (the review page; the name comes from the reviewer's
own key), `api-key:<fingerprint>` (the tenant's API key, an integration), `cli:<os user>`,
`admin:<fingerprint>` (the operator's admin API token), `fleet:auto-threshold` (beat's refit),
or `address:<client address>` for a sign-in refused before anyone is known. Secrets never
reach a row: keys are named by a fingerprint of their hash, webhook URLs by their host.
"""

from __future__ import annotations

import getpass
import hashlib
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from enrichment.core.models import Base, JSONType, UTCDateTime, utcnow

# What a row's `action` says (the vocabulary: docs/api.md lists it).
API_KEY_ROTATED = "tenant.api_key_rotated"
WEBHOOK_CHANGED = "tenant.webhook_changed"
SETTINGS_CHANGED = "tenant.settings_changed"
TENANT_DISABLED = "tenant.disabled"
TENANT_ENABLED = "tenant.enabled"
REVIEWER_ADDED = "reviewer.added"
REVIEWER_REVOKED = "reviewer.revoked"
SIGNED_IN = "review.signed_in"
SIGNED_OUT = "review.signed_out"
SIGNIN_REFUSED = "review.signin_refused"
SIGNIN_THROTTLED = "review.signin_throttled"
REVIEWED = "record.reviewed"
REQUEUED = "record.requeued"
REDELIVERED = "events.redelivered"
ACTION_APPROVED = "action.approved"
ACTION_DECLINED = "action.declined"
# The fleet moved a tenant's threshold (reviews/refit.py, the tenant's auto_threshold).
THRESHOLD_CHANGED = "tenant.threshold_changed"
AUTO_THRESHOLD_ACTOR = "fleet:auto-threshold"
# A customer's personal data scrubbed from an order and all that refers to it (history/erasure.py).
ORDER_ERASED = "order.erased"

MAX_PAGE = 500


class AuditEntry(Base):
    """One thing someone did to one tenant."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_tenant_id_id", "tenant_id", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True
    )
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(48))
    subject: Mapped[str | None] = mapped_column(String(256))
    details: Mapped[dict[str, Any]] = mapped_column(JSONType)


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name for this uid (a bare container)
        return "cli:unknown"


def api_key_actor(key_hash: str | None) -> str:
    """The tenant's API key, named by a fingerprint of its stored hash (never the key)."""
    return f"api-key:{(key_hash or '')[:12]}"


def admin_actor(token: str) -> str:
    """The operator's ENRICHMENT_ADMIN_TOKEN, named by a fingerprint of its hash (never the
    token)."""
    return f"admin:{hashlib.sha256(token.encode()).hexdigest()[:12]}"


def reviewer_actor(name: str) -> str:
    return f"reviewer:{name}"


def record(
    s: Session,
    tenant_id: int,
    actor: str,
    action: str,
    subject: str | None = None,
    *,
    now: datetime | None = None,
    **details: Any,
) -> None:
    """Add one row to the caller's transaction (it commits with the change it describes)."""
    s.add(
        AuditEntry(
            tenant_id=tenant_id, at=now or utcnow(), actor=actor[:128], action=action,
            subject=None if subject is None else subject[:256], details=details,
        )
    )  # fmt: skip


class AuditItem(BaseModel):
    """One audit row as the API and the CLI show it."""

    id: int = Field(description="ascending; pass the last one as `after` for the next page")
    at: datetime
    actor: str = Field(description="reviewer:<name>, api-key:<fingerprint>, cli:<user>, "
                       "admin:<fingerprint> or address:<client>")  # fmt: skip
    action: str
    subject: str | None
    details: dict[str, Any]


def entries(
    s: Session,
    tenant_id: int,
    *,
    after: int = 0,
    limit: int = 100,
    action: str | None = None,
) -> list[AuditItem]:
    """The tenant's rows after id `after`, oldest first, at most `limit` (up to MAX_PAGE)."""
    A = AuditEntry
    q = select(A).where(A.tenant_id == tenant_id, A.id > after)
    if action is not None:
        q = q.where(A.action == action)
    rows = s.scalars(q.order_by(A.id).limit(max(1, min(limit, MAX_PAGE))))
    return [
        AuditItem(
            id=r.id, at=r.at, actor=r.actor, action=r.action, subject=r.subject,
            details=r.details or {},
        )
        for r in rows
    ]  # fmt: skip
