"""What the drill checks on every progress tick, not only at the end: no crash leaves a
record stuck on a long lease.

A lease longer than a chain's (`core.due.chain_lease_s`: the sweep's horizon plus the lease
TTL) is a Message Batch's (BATCH_LEASE_S, 26 h). It is given only in the transaction that
stores the `batch_records` row holding the record, and freed in the one that applies that
row (enrichment/batches). So at any moment, a record leased past `now + chain lease` with no
unapplied `batch_records` row of the same lease token is one a kill left stuck: the issue's
2,000-record drill found such records leased 26 h ahead with no batch at all.

The second figure catches the other way to be stuck: a "submitting" batch (its create never
confirmed) that outlived the stale-submit give-up (`batches.apply.stale_submit_s`) by more
than one batches run.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog
from sqlalchemy import exists, select
from sqlalchemy.orm import Session, sessionmaker

from enrichment.batches.apply import stale_submit_s
from enrichment.core.batch_models import SUBMITTING, Batch, BatchRecord
from enrichment.core.due import chain_lease_s
from enrichment.core.models import ExceptionRecord as R
from enrichment.core.models import utcnow
from enrichment.core.settings import Settings

log = structlog.get_logger(__name__)

# Slack for the drill's poll against the workers' clocks and commits (same host: small).
MARGIN_S = 5.0


def unheld_long_leases(session: Session, until: datetime) -> list[int]:
    """Records leased past `until` that no unapplied batch_records row holds (same token)."""
    held = exists().where(
        BatchRecord.record_id == R.id,
        BatchRecord.lease_token == R.lease_token,
        BatchRecord.applied_at.is_(None),
    )
    return list(session.scalars(select(R.id).where(R.lease_expires_at > until, ~held)))


def overdue_submits(session: Session, before: datetime) -> list[int]:
    """ "submitting" batches created before `before`: the give-up should have taken them."""
    stmt = select(Batch.id).where(Batch.status == SUBMITTING, Batch.created_at < before)
    return list(session.scalars(stmt))


class LeaseWatch:
    """The two figures over the whole run: the distinct records and batches seen stuck."""

    def __init__(self, settings: Settings, *, margin_s: float = MARGIN_S) -> None:
        self.lease_s = chain_lease_s(settings) + margin_s
        self.give_up_s = stale_submit_s(settings) + settings.batches.interval_s + margin_s
        self.records: set[int] = set()
        self.batches: set[int] = set()
        self.ticks = 0

    def check(self, factory: sessionmaker[Session], now: datetime | None = None) -> None:
        """One tick; a database we just killed is skipped, as the progress poll is."""
        now = now or utcnow()
        try:
            with factory() as s:
                records = unheld_long_leases(s, now + timedelta(seconds=self.lease_s))
                batches = overdue_submits(s, now - timedelta(seconds=self.give_up_s))
        except Exception as exc:  # any driver error: the next tick tries again
            log.warning("drill.invariant_unavailable", error=type(exc).__name__)
            return
        self.ticks += 1
        if records or batches:
            log.warning("drill.invariant_broken", records=records[:10], batches=batches[:10])
        self.records.update(records)
        self.batches.update(batches)
