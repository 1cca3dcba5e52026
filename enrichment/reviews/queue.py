"""The review queue of one tenant: escalated records, records whose actions await approval
(the tenant's `approval_actions`) and the audit sample, soonest deadline first.

An escalated record waits since its escalation; one with actions awaiting approval, or an
audit-sampled one, since the AI resolved it. Its review deadline is that start plus its
severity's review limit (the tenant's `review_deadline_s`, else
ENRICHMENT_REVIEW_DEADLINE_S_<SEVERITY>: critical soonest), computed in SQL so the queue sorts
by it. A review (or a requeue for the AI, for an escalated record) takes it out.

At scale (issue 26) the page is not one sort of the tenant's whole queue: the limit is one
per severity class (an unknown severity counts as medium), so within a class the deadline
order is the waiting order. `_due_first` reads the first `limit` of each class in waiting
order from `ix_exception_records_review_due` (migration 0023), and merges them by (deadline,
id): the same items in the same order as sorting everything by (deadline, id).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, String, and_, case, extract, func, literal_column, select
from sqlalchemy.orm import Session

from enrichment.core import review_claims, tallies
from enrichment.core.models import (
    AWAITING_APPROVAL,
    REVIEW_CLASS_SQL,
    ExceptionRecord,
    ResolutionAction,
    Tenant,
    in_review,
    review_waiting_since,
)
from enrichment.core.settings_sections import ReviewConfig
from enrichment.core.tenant_settings import TenantSettings

R = ExceptionRecord
WAITING_SINCE = review_waiting_since()
Kind = Literal["escalation", "approval", "audit"]
KINDS: tuple[Kind, ...] = ("escalation", "approval", "audit")
SEVERITIES = ("critical", "high", "medium", "low")
UNIX_JULIAN_DAY = 2_440_587.5  # julianday('1970-01-01')
# A record's severity class, the key of ix_exception_records_review_due (its very text).
severity_class = literal_column(f"({REVIEW_CLASS_SQL})", String)


def deadline_limits(reviews: ReviewConfig, own: Mapping[str, float]) -> dict[str, float]:
    """Seconds a queued record may wait for its decision, by severity: the tenant's own
    (`own`, its review_deadline_s), else the fleet's. An unknown severity counts as medium."""
    return {sev: own.get(sev) or getattr(reviews, f"deadline_s_{sev}") for sev in SEVERITIES}


@dataclass(frozen=True)
class Filter:
    """Which queued records: by kind, by the AI's label, by severity (None: any)."""

    kind: Kind | None = None
    label: str | None = None
    severity: str | None = None

    def where(self) -> list[ColumnElement[bool]]:
        conds = []
        if self.kind == "escalation":
            conds.append(R.escalated_at.is_not(None))
        elif self.kind is not None:
            awaiting = R.approval_requested_at.is_not(None)
            conds.append(
                and_(R.escalated_at.is_(None), awaiting if self.kind == "approval" else ~awaiting)
            )
        if self.label:
            conds.append(R.ai_label == self.label)
        if self.severity:
            conds.append(R.severity == self.severity)
        return conds


def kind_of(rec: ExceptionRecord) -> Kind:
    """Why a queued record waits for a person."""
    if rec.escalated_at is not None:
        return "escalation"
    return "approval" if rec.approval_requested_at is not None else "audit"


class QueueItem(BaseModel):
    """One record waiting for a person, with what they need to decide at a glance."""

    record_id: int
    external_id: str
    kind: Kind = Field(
        description="escalation: the AI gave up; approval: actions the AI chose wait for a "
        "person's approval (keep them in the review's actions to approve, leave them out to "
        "decline); audit: a random sample of AI-resolved records"
    )
    waiting_since: datetime
    deadline: datetime = Field(
        description="when its decision is due: waiting_since + its severity's review limit"
    )
    claimed_by: str | None = Field(None, description="the reviewer holding it now, if any")
    claimed_until: datetime | None = None
    reason: str | None = Field(description="why it was escalated")
    reason_code: str
    severity: str
    notes: str | None = Field(description="the customer's note (untrusted text)")
    ai_label: str | None = Field(description="the AI's best guess, if it gave one")
    ai_confidence: float | None
    retry_count: int
    awaiting_approval: list[str] = Field(
        default_factory=list, description="the actions waiting for this person's approval"
    )


class Queue(BaseModel):
    total: int
    oldest_age_s: float | None = Field(description="how long the oldest item has waited")
    items: list[QueueItem] = Field(description="soonest deadline first")


def waiting_since(rec: ExceptionRecord) -> datetime:
    return rec.escalated_at or rec.approval_requested_at or rec.enriched_at


def _item(
    rec: ExceptionRecord,
    awaiting: list[str],
    limits: Mapping[str, float],
    held: review_claims.Claim | None,
) -> QueueItem:
    since = waiting_since(rec)
    limit_s = limits.get(rec.severity, limits["medium"])
    return QueueItem(
        record_id=rec.id,
        external_id=rec.external_id,
        kind=kind_of(rec),
        waiting_since=since,
        deadline=since + timedelta(seconds=limit_s),
        claimed_by=held.reviewer if held else None,
        claimed_until=held.until if held else None,
        reason=rec.escalation_reason,
        reason_code=rec.reason_code,
        severity=rec.severity,
        notes=rec.notes,
        ai_label=rec.ai_label,
        ai_confidence=rec.ai_confidence,
        retry_count=rec.enrichment_retry_count,
        awaiting_approval=awaiting,
    )


def queue(
    session: Session,
    tenant_id: int,
    *,
    now: datetime,
    limit: int = 50,
    reviews: ReviewConfig | None = None,
    only: Filter | None = None,
) -> Queue:
    """The tenant's queue (`only` the records the filter lets through): its size, its oldest
    wait, and the `limit` items due soonest (`reviews`: the fleet's review limits)."""
    scoped = (R.tenant_id == tenant_id, in_review(), *(only or Filter()).where())
    total, oldest = size(session, tenant_id, only)
    limits = _limits_of(session, tenant_id, reviews)
    ids = _due_first(session, scoped, limits, limit, (only or Filter()).severity)
    found = {
        r.id: r for r in session.scalars(select(R).where(R.tenant_id == tenant_id, R.id.in_(ids)))
    }
    recs = [found[i] for i in ids]
    age = None if oldest is None else (now - _aware(oldest)).total_seconds()
    waiting = awaiting_of(session, tenant_id, ids)
    held = review_claims.holders(session, tenant_id, ids, now=now)
    items = [_item(r, waiting[r.id], limits, held.get(r.id)) for r in recs]
    return Queue(total=total, oldest_age_s=age, items=items)


def size(session: Session, tenant_id: int, only: Filter | None) -> tuple[int, datetime | None]:
    """How many records the queue holds (`only` those the filter lets through) and the
    earliest waiting start among them. Unfiltered on PostgreSQL: the count from the record
    tallies (core/tallies.py), the earliest from the head of each severity class of
    `ix_exception_records_review_due` (four probes); otherwise one pass (`scanned_size`)."""
    if (only is not None and only != Filter()) or not tallies.kept(session):
        return scanned_size(session, tenant_id, only)
    total = tallies.count(tallies.tally_rows(session, tenant_id), lambda r: r.queued)
    return total, session.scalar(select(oldest_waiting(R.tenant_id == tenant_id, in_review())))


def oldest_waiting(*scoped: ColumnElement[bool]) -> ColumnElement[datetime]:
    """The earliest waiting start among the queued records `scoped` lets through: the head of
    each severity class of `ix_exception_records_review_due` (four index probes), the least."""
    heads = [
        select(func.min(WAITING_SINCE)).where(*scoped, severity_class == c).scalar_subquery()
        for c in SEVERITIES
    ]
    return func.least(*heads)


def scanned_size(
    session: Session, tenant_id: int, only: Filter | None
) -> tuple[int, datetime | None]:
    """`size` from the queued records themselves (SQLite, a filter; the tests' oracle)."""
    scoped = (R.tenant_id == tenant_id, in_review(), *(only or Filter()).where())
    total, oldest = session.execute(
        select(func.count(), func.min(WAITING_SINCE)).where(*scoped)
    ).one()
    return total, oldest


def _due_first(
    session: Session,
    scoped: tuple[ColumnElement[bool], ...],
    limits: Mapping[str, float],
    limit: int,
    severity: str | None = None,
) -> list[int]:
    """The ids of the first `limit` records `scoped` lets through by (deadline, id): the first
    `limit` of each severity class in waiting order (on PostgreSQL an index scan each), merged
    by their deadline as SQL computes it. On SQLite, whose deadline keeps only milliseconds,
    each class is sorted by (deadline, id) itself."""
    due = _deadline_epoch(session, limits)
    order = (due, R.id) if session.get_bind().dialect.name == "sqlite" else (WAITING_SINCE, R.id)
    classes = [severity if severity in limits else "medium"] if severity else SEVERITIES
    heads: list[tuple[float, int]] = []
    for cls in classes:
        rows = session.execute(
            select(due, R.id).where(*scoped, severity_class == cls).order_by(*order).limit(limit)
        )
        heads.extend((d, i) for d, i in rows)
    return [i for _, i in sorted(heads)[:limit]]


def _limits_of(session: Session, tenant_id: int, reviews: ReviewConfig | None) -> dict[str, float]:
    own = TenantSettings.parse(
        session.scalar(select(Tenant.settings).where(Tenant.id == tenant_id))
    )
    # Without the caller's settings (the bearer API's queue), the environment's.
    return deadline_limits(reviews or ReviewConfig.from_env(), own.review_deadline_s)


def _deadline_epoch(session: Session, limits: Mapping[str, float]) -> ColumnElement[Any]:
    """A queued record's deadline in seconds since the epoch, in SQL (so the queue sorts by
    it): its waiting start plus its severity's limit."""
    limit_s = case(
        *[(R.severity == sev, limits[sev]) for sev in SEVERITIES if sev != "medium"],
        else_=limits["medium"],
    )
    if session.get_bind().dialect.name == "sqlite":  # text timestamps
        start = (func.julianday(WAITING_SINCE) - UNIX_JULIAN_DAY) * 86_400.0
    else:
        start = extract("epoch", WAITING_SINCE)
    return start + limit_s


def awaiting_of(session: Session, tenant_id: int, record_ids: list[int]) -> dict[int, list[str]]:
    """Each record's actions AWAITING_APPROVAL (record id -> names), in one query."""
    A = ResolutionAction
    rows = session.execute(
        select(A.record_id, A.action)
        .where(A.tenant_id == tenant_id, A.record_id.in_(record_ids))
        .where(A.status == AWAITING_APPROVAL)
        .order_by(A.id)
    )
    found: dict[int, list[str]] = defaultdict(list)
    for record_id, action in rows:
        found[record_id].append(action)
    return found


def _aware(at: datetime) -> datetime:
    """min() over SQLite's text timestamps comes back naive: it is UTC."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def in_queue(session: Session, tenant_id: int, record_id: int) -> ExceptionRecord | None:
    """The tenant's record `record_id` if it is waiting for a person."""
    return session.scalar(select(R).where(R.tenant_id == tenant_id, R.id == record_id, in_review()))


def next_up(
    session: Session,
    tenant_id: int,
    reviewer: str,
    *,
    now: datetime,
    reviews: ReviewConfig | None = None,
) -> int | None:
    """The record due soonest that no one else holds (the reviewer's next), or None."""
    C = review_claims.ReviewClaim
    taken = select(C.record_id).where(
        C.tenant_id == tenant_id, C.claimed_until > now, C.reviewer != reviewer
    )
    limits = _limits_of(session, tenant_id, reviews)
    first = _due_first(
        session, (R.tenant_id == tenant_id, in_review(), R.id.not_in(taken)), limits, 1
    )
    return first[0] if first else None
