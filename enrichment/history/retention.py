"""What is past retention: one policy per kind of history (core/settings_retention.RETAINED),
each naming its table, its time column, the state its rows must be in, and the rows that go
with each of them. The one place the rules live: the row pruner (pruner.py) reads them
today; a pruner by time partitions can read the same tables, columns and cutoffs.

A row is past retention when its tenant's days for its kind (the tenant's `retention_days`,
else the fleet's ENRICHMENT_RETENTION_<KIND>_DAYS; 0 keeps it forever) have passed since its
time column, and it is in its policy's state. Whatever is still referred to stays: a record
with attempts, events, reviews, batch rows or shadow answers left, or waiting for a person;
an event not delivered (pending for a tenant with a webhook, or stopped); a tenant's newest
snapshot. A silence goes by its end (`ends_at`), so one still muting stays. Reviews and
the audit log have no policy: they are kept forever.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Select, Table, and_, exists, not_, or_, select, true
from sqlalchemy.orm import aliased

from enrichment.core.batch_models import APPLIED, GIVEN_UP, Batch, BatchRecord
from enrichment.core.delivery_log import WebhookDelivery
from enrichment.core.models import (
    EXCEPTION,
    REOPENED,
    EnrichmentAttempt,
    ExceptionRecord,
    OutboxEvent,
    ResolutionAction,
    Review,
    Tenant,
    in_review,
)
from enrichment.core.monitor_models import Alert, AlertSilence, MetricSnapshot
from enrichment.core.outbox import DEAD, DELIVERED, PENDING
from enrichment.core.review_claims import ReviewClaim
from enrichment.core.settings_retention import ARCHIVE, RetentionConfig
from enrichment.core.shadow_answers import ShadowAnswer
from enrichment.core.tenant_settings import TenantSettings

A, E, R = EnrichmentAttempt, OutboxEvent, ExceptionRecord
FAILED = "failed"


@dataclass(frozen=True)
class Policy:
    """One kind of history: rows of `table` whose `time_column` is older than the cutoff and
    that match `state()`; `dependents` (table, column naming the row's id) go with each row,
    first (they refer to it, or only describe it)."""

    kind: str
    table: Table
    time_column: str
    state: Callable[[], ColumnElement[bool]]
    dependents: tuple[tuple[Table, str], ...] = ()

    @property
    def time(self):
        return self.table.c[self.time_column]


def _touched_by_a_person() -> ColumnElement[bool]:
    """The attempt's record was escalated or reviewed: its history is kept long."""
    return exists().where(
        R.id == A.record_id, or_(R.escalated_at.is_not(None), R.reviewed_at.is_not(None))
    )


def _attempt_succeeded() -> ColumnElement[bool]:
    return and_(A.outcome.not_in((FAILED, REOPENED)), not_(_touched_by_a_person()))


def _attempt_kept_long() -> ColumnElement[bool]:
    return not_(_attempt_succeeded())


def _pulled() -> ColumnElement[bool]:
    """Pending for a tenant without a webhook: only the pull feed reads it."""
    pushed = exists().where(Tenant.id == E.tenant_id, Tenant.webhook_url.is_not(None))
    return and_(E.status == PENDING, not_(pushed))


def _older_than_newest() -> ColumnElement[bool]:
    newer = aliased(MetricSnapshot)
    return exists().where(
        newer.tenant_id == MetricSnapshot.tenant_id, newer.taken_at > MetricSnapshot.taken_at
    )


def _record_unreferenced() -> ColumnElement[bool]:
    """Enriched, done with people, unleased, and nothing refers to it but its actions."""
    refs = (A, E, Review, BatchRecord, ReviewClaim, ShadowAnswer)
    return and_(
        R.record_type == EXCEPTION,
        R.enriched_at.is_not(None),
        R.lease_token.is_(None),
        not_(in_review()),
        *(not_(exists().where(ref.record_id == R.id)) for ref in refs),
    )


EVENT_LOG = ((WebhookDelivery.__table__, "event_id"),)
BATCH_ROWS = ((BatchRecord.__table__, "batch_id"),)

# Records first: whether a record may go is judged before this pass removes what refers to
# it, so a dry run counts exactly what the pass removes (a record freed today goes next pass).
POLICIES: tuple[Policy, ...] = (
    Policy("records", R.__table__, "created_at", _record_unreferenced,
           ((ResolutionAction.__table__, "record_id"),)),
    Policy("attempts_succeeded", A.__table__, "created_at", _attempt_succeeded),
    Policy("attempts_failed", A.__table__, "created_at", _attempt_kept_long),
    Policy("events_delivered", E.__table__, "created_at", lambda: E.status == DELIVERED,
           EVENT_LOG),
    Policy("events_dead", E.__table__, "created_at", lambda: E.status == DEAD, EVENT_LOG),
    Policy("events_pulled", E.__table__, "created_at", _pulled, EVENT_LOG),
    Policy("snapshots", MetricSnapshot.__table__, "taken_at", _older_than_newest),
    Policy("alerts", Alert.__table__, "updated_at", lambda: Alert.state == "inactive"),
    Policy("silences", AlertSilence.__table__, "ends_at", true),
    Policy("batches_applied", Batch.__table__, "applied_at", lambda: Batch.status == APPLIED,
           BATCH_ROWS),
    Policy("batches_given_up", Batch.__table__, "created_at", lambda: Batch.status == GIVEN_UP,
           BATCH_ROWS),
)  # fmt: skip


def days_for(kind: str, fleet: RetentionConfig, own: TenantSettings) -> int:
    """The days a tenant keeps `kind` (0: forever): its own setting, else the fleet's."""
    return own.retention_days.get(kind, fleet.days(kind))


def cutoff(policy: Policy, fleet: RetentionConfig, own: TenantSettings, now: datetime):
    """The time before which the tenant's rows of `policy` are past retention; None: the
    policy keeps everything (0 days, or records while ENRICHMENT_RETENTION_RECORDS=keep)."""
    if policy.kind == "records" and fleet.records != ARCHIVE:
        return None
    days = days_for(policy.kind, fleet, own)
    return None if days == 0 else now - timedelta(days=days)


def past(policy: Policy, tenant_id: int, before: datetime) -> Select:
    """The ids of the tenant's rows past retention (no order, no limit: add them)."""
    t = policy.table
    return select(t.c.id).where(t.c.tenant_id == tenant_id, policy.time < before, policy.state())
