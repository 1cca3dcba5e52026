"""Tables. PostgreSQL is the durable truth; SQLite works for the embedded demo."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    FetchedValue,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    and_,
    func,
    or_,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.elements import ColumnElement

from enrichment.core.settings import Settings

JSONType = JSON().with_variant(JSONB(), "postgresql")

# A record waits for enrichment until it is enriched or escalated to a person. This string is
# the partial indexes' predicate and the raw-SQL form; `in_backlog()` below is the ORM form.
# (Migrations keep their own copy: they are history and never import changing constants.)
BACKLOG_SQL = "enriched_at IS NULL AND escalated_at IS NULL"
# The retry partial index covers retry counts 1..4: it hard-codes the default
# ENRICHMENT_MAX_RETRIES (5). With another setting it still exists, it only covers less.
RETRY_INDEX_MAX_RETRIES = 5


def utcnow() -> datetime:
    return datetime.now(UTC)


def partial_where(sql: str) -> dict[str, Any]:
    """A partial index's predicate, the same on PostgreSQL and SQLite."""
    return {"postgresql_where": text(sql), "sqlite_where": text(sql)}


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC in and out, on PostgreSQL (timestamptz) and SQLite (naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_name)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    confidence_threshold: Mapped[float] = mapped_column(
        Float, default=Settings.confidence_threshold
    )
    settings: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    api_key_hash: Mapped[str | None] = mapped_column(String(128))
    # Where decisions are POSTed (Standard Webhooks); NULL: the tenant pulls them instead.
    # Both are secrets: never logged.
    webhook_url: Mapped[str | None] = mapped_column(Text)
    webhook_secret: Mapped[str | None] = mapped_column(String(64))
    # A rotation's overlap (delivery/webhooks.py): the old secret signs too until then.
    webhook_previous_secret: Mapped[str | None] = mapped_column(String(64))
    webhook_previous_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set while disabled (core/tenant_admin.py): the claim skips its records, its API key
    # and its reviewers are refused; its data stays.
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (UniqueConstraint("tenant_id", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    external_id: Mapped[str] = mapped_column(String(128))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    events: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# record_type values, and the source of an exception the order analysis raised.
EXCEPTION, ORDER = "exception", "order"
RAISED_BY_AI = "ai_order_analyzer"
EXTERNAL_ID_CHARS = 128


def bounded_id(prefix: str, external_id: str) -> str:
    """`prefix` + an order's external id as an external id of our own (a watch's, a raised
    exception's): a blake2b digest instead of an id too long to fit, never a cut one."""
    if len(prefix) + len(external_id) <= EXTERNAL_ID_CHARS:
        return prefix + external_id
    return f"{prefix}#{hashlib.blake2b(external_id.encode(), digest_size=16).hexdigest()}"


class ExceptionRecord(Base):
    __tablename__ = "exception_records"
    __table_args__ = (
        UniqueConstraint("tenant_id", "external_id"),
        # The seed's two partial indexes, plus the one the sweep's claim reads.
        # Keyed by created_at too: the monitor counts the young unclassified (migration 0024).
        Index(
            "idx_enrichment_pending",
            "tenant_id",
            "created_at",
            postgresql_include=["ai_confidence", "record_type"],
            **partial_where("ai_confidence IS NULL OR ai_label IS NULL"),
        ),
        Index(
            "idx_enrichment_retry",
            "tenant_id",
            postgresql_where=text(
                f"enrichment_retry_count > 0 AND enrichment_retry_count < {RETRY_INDEX_MAX_RETRIES}"
            ),
        ),
        Index("idx_enrichment_due", "next_attempt_at", **partial_where(BACKLOG_SQL)),
        Index("ix_exception_records_tenant_created", "tenant_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    external_id: Mapped[str] = mapped_column(String(128))
    reason_code: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    # 0-100 from the source (e.g. order value, an SLA at risk): earlier within its severity.
    priority: Mapped[int | None] = mapped_column(Integer)
    # Its place in its tenant's claim order, kept by a database trigger from next_attempt_at,
    # severity and priority (enrichment/core/scheduling.py; migration 0005).
    sched_at: Mapped[datetime | None] = mapped_column(UTCDateTime, server_default=FetchedValue())
    status: Mapped[str] = mapped_column(String(16), default="OPEN")
    # "exception", or "order": a watched order (core/order_watch.py), whose only stage is
    # order analysis, rechecked at its next deadline until it is closed.
    record_type: Mapped[str] = mapped_column(
        String(16), default=EXCEPTION, server_default=EXCEPTION
    )
    # Who raised an exception: NULL for the tenant, RAISED_BY_AI for the order analysis.
    source: Mapped[str | None] = mapped_column(String(32))
    # When the tenant's own exception for the same order and problem attached to a raised one.
    attached_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    notes: Mapped[str | None] = mapped_column(Text)
    # Ground truth from the data source, for evaluation only: no stage ever reads it.
    reference_label: Mapped[str | None] = mapped_column(String(32))

    # AI output. NULL means "not (successfully) enriched yet" - never a default.
    ai_label: Mapped[str | None] = mapped_column(String(32))
    ai_confidence: Mapped[float | None] = mapped_column(Float)
    # The tenant's calibration map applied to ai_confidence (core/calibration_maps.py) and
    # that map's version; NULL: uncalibrated (no map with enough reviews for its source).
    ai_calibrated_confidence: Mapped[float | None] = mapped_column(Float)
    calibration_version: Mapped[int | None] = mapped_column(Integer)
    ai_notes: Mapped[str | None] = mapped_column(Text)
    ai_analysis: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    ai_resolution: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # Which provider, model and prompt version produced each stage's fields.
    ai_source: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)

    enrichment_state: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    last_enrichment_attempt: Mapped[datetime | None] = mapped_column(UTCDateTime)
    enrichment_retry_count: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_token: Mapped[str | None] = mapped_column(String(36))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    enriched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    escalation_reason: Mapped[str | None] = mapped_column(Text)
    # Chosen at random when the AI resolves the record: a person checks it (the audit sample).
    audit_sample: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # The audit sample's draw probability for this record (core/audit_sampling.py); its
    # review's weight is 1 / it. NULL: not resolved by the AI (never drawn).
    sampling_probability: Mapped[float | None] = mapped_column(Float)
    # A person's decision, beside the AI's fields (which keep what the AI said, or NULL).
    final_label: Mapped[str | None] = mapped_column(String(32))
    final_actions: Mapped[list[str] | None] = mapped_column(JSONType)
    decided_by: Mapped[str | None] = mapped_column(String(16))  # "human" once reviewed
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set by the resolve that left actions AWAITING_APPROVAL (the tenant's approval_actions):
    # the record waits in the review queue until a person approves or declines them.
    approval_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


# Waiting for a person: escalated, or resolved and either sampled for audit or with actions
# awaiting approval, and not reviewed yet.
REVIEW_SQL = (
    "reviewed_at IS NULL AND (escalated_at IS NOT NULL OR (enriched_at IS NOT NULL"
    " AND (audit_sample OR approval_requested_at IS NOT NULL)))"
)


HUMAN = "human"  # decided_by of a record a person reviewed


def review_waiting_since() -> ColumnElement[datetime]:
    """Since when a queued record waits: its escalation, its request for approval, or its
    resolution (an audit item)."""
    R = ExceptionRecord
    return func.coalesce(R.escalated_at, R.approval_requested_at, R.enriched_at)


def in_review() -> ColumnElement[bool]:
    """In the review queue (REVIEW_SQL)."""
    R = ExceptionRecord
    return and_(
        R.reviewed_at.is_(None),
        or_(
            R.escalated_at.is_not(None),
            and_(
                R.enriched_at.is_not(None),
                or_(R.audit_sample, R.approval_requested_at.is_not(None)),
            ),
        ),
    )


def in_backlog() -> ColumnElement[bool]:
    """Waiting for enrichment: neither enriched nor escalated (BACKLOG_SQL)."""
    return and_(ExceptionRecord.enriched_at.is_(None), ExceptionRecord.escalated_at.is_(None))


def is_escalated() -> ColumnElement[bool]:
    """Handed to a person and not reviewed yet: what the escalated counts of health, backlog
    and alerts count. A review closes the escalation; `escalated_at` keeps when it began."""
    return and_(ExceptionRecord.escalated_at.is_not(None), ExceptionRecord.reviewed_at.is_(None))


class EnrichmentAttempt(Base):
    """One row per stage attempt: the source of failure rate, latency and cost."""

    __tablename__ = "enrichment_attempts"
    __table_args__ = (Index("ix_enrichment_attempts_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    record_id: Mapped[int] = mapped_column(ForeignKey("exception_records.id"), index=True)
    stage: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    latency_s: Mapped[float] = mapped_column(Float)
    provider: Mapped[str] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(64))
    prompt_version: Mapped[str | None] = mapped_column(String(32))
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_write_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_read_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    lease_token: Mapped[str | None] = mapped_column(String(36))
    # stage "reopen" rows (outcome "reopened") keep the result a re-enrichment replaced.
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # The Message Batch (batches.id) that carried this call; NULL: the interactive path.
    batch_id: Mapped[int | None] = mapped_column(Integer)
    # A failure's cause (core/faults.py), "paused" when an open breaker kept the call back.
    fault: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


REOPENED = "reopened"  # the attempt outcome of an audit row: no stage ran, no AI was called


RECORDED, AWAITING_APPROVAL, DECLINED = "RECORDED", "AWAITING_APPROVAL", "DECLINED"


class ResolutionAction(Base):
    """One row per (record, action): the unique key makes every action run at most once.

    status: RECORDED (decided) -> DELIVERED (its action.requested event got a 2xx) -> DONE or
    FAILED (the receiver reported the outcome, with `note`). An action of the tenant's
    `approval_actions` starts AWAITING_APPROVAL, with no event: a person's review makes it
    RECORDED (and writes its event) or DECLINED (never sent).
    """

    __tablename__ = "resolution_actions"
    __table_args__ = (UniqueConstraint("record_id", "action"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("exception_records.id"))
    action: Mapped[str] = mapped_column(String(48))
    # AWAITING_APPROVAL is 17 characters: 24 on PostgreSQL (migration 0010). SQLite never
    # enforces a length and keeps its 16 (a batch copy of the table would trip the outbox's
    # foreign keys to it).
    status: Mapped[str] = mapped_column(
        String(16).with_variant(String(24), "postgresql"), default=RECORDED
    )
    note: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OutboxEvent(Base):
    """A decision as an event, written by the statement that writes the decision.

    type: record.enriched, record.escalated or action.requested (with `action_id`).
    status: pending -> delivered (a 2xx), stopped (a 4xx other than 429: a person looks),
    or dead (`attempts` reached the limit). The webhook id is `evt_<id>`: stable across retries.
    `tx` is the writing transaction's id (PostgreSQL): the pull cursor orders by (tx, id)
    and shows only finished transactions, so an event committed late is never skipped.
    """

    __tablename__ = "outbox_events"
    __table_args__ = (
        Index("ix_outbox_events_due", "next_delivery_at", **partial_where("status = 'pending'")),
        Index("ix_outbox_events_record", "record_id", "id"),
        # The monitor counts each tenant's pending and dead events: a small set, indexed.
        Index(
            "ix_outbox_events_open", "tenant_id", "status", **partial_where("status <> 'delivered'")
        ),
        Index("ix_outbox_events_tenant_tx", "tenant_id", "tx", "id"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True
    )
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    record_id: Mapped[int] = mapped_column(ForeignKey("exception_records.id"))
    action_id: Mapped[int | None] = mapped_column(ForeignKey("resolution_actions.id"))
    type: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_delivery_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    tx: Mapped[int] = mapped_column(BigInteger, server_default=FetchedValue())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Review(Base):
    """A person's decision on one record: kind "escalation" or "audit". The AI's label,
    confidence and source at that moment are kept, so calibration compares like with like.
    A later review that overrides this one is a new row (`overrides` names this one)."""

    __tablename__ = "reviews"
    __table_args__ = (Index("ix_reviews_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    record_id: Mapped[int] = mapped_column(ForeignKey("exception_records.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    reviewer: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(32))
    actions: Mapped[list[str]] = mapped_column(JSONType)
    note: Mapped[str | None] = mapped_column(Text)
    ai_label: Mapped[str | None] = mapped_column(String(32))
    ai_confidence: Mapped[float | None] = mapped_column(Float)
    # {"provider", "model", "prompt_version"} of the classification the AI gave, if any.
    ai_source: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # The record's audit sampling probability, copied at review time (its weight is 1 / it).
    sampling_probability: Mapped[float | None] = mapped_column(Float)
    overrides: Mapped[int | None] = mapped_column(ForeignKey("reviews.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# The indexes the monitor, the review queue, the claim and the backlog route read: a module of
# their own, imported last so that the classes above exist when it runs.
from enrichment.core.record_indexes import REVIEW_CLASS_SQL  # noqa: E402, F401
