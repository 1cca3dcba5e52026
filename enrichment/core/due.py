"""The claim's words as SQL conditions: what is due, what is in flight, how fast the fleet goes.

The claim in four modules: due (the words) -> scheduling (the pure rules) -> demand (each
tenant's inputs, read) -> selection (the claim itself, the one entry point).

The one definition of each, used by the claim (selection.py, demand.py, the batches), the
monitor (metrics/passes.py), Prometheus (metrics/prom.py), the report
(reporting/reports.py) and the progress line (tooling/progress.py).

The words, from widest to narrowest:
- backlog (`models.in_backlog`): waiting for enrichment, neither enriched nor escalated.
- past due (`past_due`): in the backlog and its `next_attempt_at` has come, whether or not
  a lease holds it (the report's "due now"); the rest of the backlog is in backoff.
- due and unclaimed (`due_unclaimed`): past due, retries left and no live lease: what a
  sweep takes now, and what starves when nobody does. `claimable` is the same looking
  `sweep_horizon_s` ahead: what a claim takes (a countdown covers the rest of the wait).
- leased (`leased`): a live lease, a chain's or a Message Batch's.
- in a chain (`in_chain`): leased with a chain's lease, so held by a worker or the broker.
- throughput (`fleet_load`): stages completed by chains over `throughput_window_s`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Integer, and_, column, func, literal, or_, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import TableValuedAlias

from enrichment.core.models import EnrichmentAttempt as A
from enrichment.core.models import ExceptionRecord as R
from enrichment.core.models import in_backlog
from enrichment.core.settings import Settings
from enrichment.core.stages import STAGES_PER_RECORD


def past_due(now: datetime) -> ColumnElement[bool]:
    """In the backlog with its next attempt time come, leased or not."""
    return and_(in_backlog(), R.next_attempt_at <= now)


def in_backoff(now: datetime) -> ColumnElement[bool]:
    """In the backlog, waiting for its next attempt time (a retry or a recheck)."""
    return and_(in_backlog(), R.next_attempt_at > now)


def unleased(now: datetime) -> ColumnElement[bool]:
    """No live lease: never claimed, released, or its lease expired."""
    return or_(R.lease_expires_at.is_(None), R.lease_expires_at < now)


def leased(now: datetime) -> ColumnElement[bool]:
    """A live lease, a chain's or a Message Batch's."""
    return R.lease_expires_at > now


def is_leased(record: R, now: datetime) -> bool:
    """`leased` for a record already loaded."""
    return record.lease_expires_at is not None and record.lease_expires_at > now


def due_unclaimed(now: datetime, max_retries: int, *, within_s: float = 0.0) -> ColumnElement[bool]:
    """Due by `now` + `within_s`, retries left, and not leased now.

    "Needs enrichment" is the seed's reprocessing query: no label or confidence yet, or a
    confidence below the tenant's threshold (a recheck), plus a confident record whose resolve
    has not finished (else a resolve failure would never be retried). Together that is every
    record in the backlog. *When* is `next_attempt_at`'s business, as for every wait: after a
    low-confidence answer the pipeline sets it to the seed's "not updated for 24 hours"
    (ENRICHMENT_LOW_CONFIDENCE_RECHECK_S), and a requeue sets it to now."""
    until = now + timedelta(seconds=within_s)
    return and_(
        past_due(until),
        R.enrichment_retry_count <= max_retries,
        unleased(now),
        # Implied by the line above (sched_at <= next_attempt_at), but it bounds the walk on
        # ix_exception_records_sched: a tenant with nothing due reads no records in backoff.
        R.sched_at <= until,
    )


def claimable(now: datetime, settings: Settings) -> ColumnElement[bool]:
    """What a claim takes: due within the sweep's horizon and unclaimed."""
    return due_unclaimed(now, settings.max_retries, within_s=settings.sweep_horizon_s)


def chain_lease_s(settings: Settings) -> float:
    """The longest lease a chain holds: a claim's countdown horizon plus the lease TTL. A
    record in a Message Batch holds a far longer one (enrichment.batches)."""
    return settings.sweep_horizon_s + settings.lease_ttl_s


def in_chain(now: datetime, settings: Settings) -> ColumnElement[bool]:
    """Leased to a chain now (a worker's, not a Message Batch's)."""
    until = now + timedelta(seconds=chain_lease_s(settings))
    return and_(R.lease_token.is_not(None), R.lease_expires_at > now, R.lease_expires_at <= until)


def throughput_window_s(settings: Settings) -> float:
    """The throughput window: a few sweep intervals, so the sweep's size follows the fleet
    within a few sweeps; at least 10 s (against noise) and at most 60 s (the default)."""
    return min(60.0, max(10.0, 3 * settings.sweep_interval_s))


def chain_stage_done(now: datetime, window_s: float) -> ColumnElement[bool]:
    """An attempt a chain completed in the `window_s` before `now`.

    Message Batch results do not count: a batch's results are applied all at once, long
    after the work was sent, by the batches run rather than a worker, so a 10,000-record
    apply would read as a fleet 100 times faster and size the next sweeps (and the desired
    workers) for workers that do not exist. Batch records are not in flight either
    (`in_chain`), so both halves of the load speak of the same work."""
    return and_(
        A.created_at > now - timedelta(seconds=window_s),
        A.created_at <= now,
        A.outcome == "completed",
        A.batch_id.is_(None),
    )


@dataclass(frozen=True)
class FleetLoad:
    """Fleet-wide, now: stages chains completed over `window_s`, records in a chain, and
    (when asked for) records due and unclaimed."""

    completed_stages: int
    in_chains: int
    window_s: float
    due: int = 0

    @property
    def records_per_s(self) -> float:
        return self.completed_stages / STAGES_PER_RECORD / self.window_s

    @property
    def backlog(self) -> int:
        """What the fleet has to get through: due and unclaimed, plus in a chain."""
        return self.due + self.in_chains


def fleet_load(
    session: Session, settings: Settings, now: datetime, *, count_due: bool = False
) -> FleetLoad:
    """One statement on small index ranges (ix_enrichment_attempts_created,
    ix_exception_records_leased; with `count_due`, idx_enrichment_due): fleet-wide by
    design, as the broker queue it sizes is shared."""
    window_s = throughput_window_s(settings)
    counts = [
        select(func.count()).select_from(A).where(chain_stage_done(now, window_s)),
        select(func.count()).select_from(R).where(in_chain(now, settings)),
    ]
    if count_due:
        counts.append(
            select(func.count()).select_from(R).where(due_unclaimed(now, settings.max_retries))
        )
    row = session.execute(select(*(c.scalar_subquery() for c in counts))).one()
    due = int(row[2]) if count_due else 0
    return FleetLoad(int(row[0]), int(row[1]), window_s, due)


def unnest(**arrays: list[int]) -> TableValuedAlias:
    """`unnest(:a, :b, ...) AS shares(a, b, ...)`: integer arrays as one row set."""
    params = [literal(v, ARRAY(Integer)) for v in arrays.values()]
    columns = [column(name, Integer) for name in arrays]
    return func.unnest(*params).table_valued(*columns).render_derived(name="shares")
