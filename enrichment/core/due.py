"""What is due and what is in flight: the predicates every claim shares (selection.py,
demand.py, the batches), and the array parameters that keep their statements one shape."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Integer, and_, column, func, literal, or_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import TableValuedAlias

from enrichment.core.models import ExceptionRecord as R
from enrichment.core.models import in_backlog
from enrichment.core.settings import Settings


def claimable(now: datetime, settings: Settings) -> ColumnElement[bool]:
    """Needs enrichment, has retries left, is due within the horizon and is not leased.

    "Needs enrichment" is the seed's reprocessing query: no label or confidence yet, or a
    confidence below the tenant's threshold (a recheck), plus a confident record whose resolve
    has not finished (else a resolve failure would never be retried). Together that is every
    record in the backlog. *When* is `next_attempt_at`'s business, as for every wait: after a
    low-confidence answer the pipeline sets it to the seed's "not updated for 24 hours"
    (ENRICHMENT_LOW_CONFIDENCE_RECHECK_S), and a requeue sets it to now."""
    horizon = now + timedelta(seconds=settings.sweep_horizon_s)
    return and_(
        in_backlog(),
        R.enrichment_retry_count <= settings.max_retries,
        R.next_attempt_at <= horizon,
        or_(R.lease_expires_at.is_(None), R.lease_expires_at < now),
        # Implied by the line above (sched_at <= next_attempt_at), but it bounds the walk on
        # ix_exception_records_sched: a tenant with nothing due reads no records in backoff.
        R.sched_at <= horizon,
    )


def chain_lease_s(settings: Settings) -> float:
    """The longest lease a chain holds: a claim's countdown horizon plus the lease TTL. A
    record in a Message Batch holds a far longer one (enrichment.batches)."""
    return settings.sweep_horizon_s + settings.lease_ttl_s


def in_chain(now: datetime, settings: Settings) -> ColumnElement[bool]:
    """Leased to a chain now (a worker's, not a Message Batch's)."""
    until = now + timedelta(seconds=chain_lease_s(settings))
    return and_(R.lease_token.is_not(None), R.lease_expires_at > now, R.lease_expires_at <= until)


def unnest(**arrays: list[int]) -> TableValuedAlias:
    """`unnest(:a, :b, ...) AS shares(a, b, ...)`: integer arrays as one row set."""
    params = [literal(v, ARRAY(Integer)) for v in arrays.values()]
    columns = [column(name, Integer) for name in arrays]
    return func.unnest(*params).table_valued(*columns).render_derived(name="shares")
