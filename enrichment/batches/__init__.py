"""Message Batches: a tenant's backlog sent to the AI at half price, one stage per batch.

When (per tenant, tenants.settings, read by core.scheduling): "batch_mode" "auto" (the
default) sends a backlog of more than "batch_min_records" (ENRICHMENT_BATCH_MIN_RECORDS,
500) due records by batch; "always" sends every due record by batch (the sweep leaves the
tenant to it); "never" keeps the tenant on the chains. Only the anthropic provider has
batches; the local one answers in-process.

The life of a batch, each step run by beat's `enrichment.batches` task:
1. submit (submit.py): claim the tenant's due records with a lease that outlives the
   batch's 24 h expiry (no broker countdown is involved), begin each record's next stage
   exactly as a chain would (`pipeline.begin_stage`), store the batch and its records
   ("submitting"), then create it with the same request bodies the chain sends;
2. poll (apply.py): retrieve "in_progress" batches and note the counts;
3. apply (apply.py): stream an ended batch's results and apply each through the chain's
   own outcome code (`outcomes.finish_stage`, `pipeline.write`): validation, NULL on a
   failure, backoff, escalation, attempt rows (priced at the batch rate, with `batch_id`),
   events. "errored" is a failure of the stage; "expired" and "canceled" hand the record
   back without burning a retry. A record whose stage completed is released, and the next
   sweep or batch takes its next stage.

A result is applied once: `batch_records.applied_at` is set in the transaction that writes
it, so a worker killed mid-apply leaves the rest for the next run and repeats none.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

# The advisory lock every batches run takes ("enrb" in ASCII).
_LOCK_KEY = 0x656E7262


@contextmanager
def exclusive(factory: sessionmaker[Session]) -> Iterator[bool]:
    """True while this process holds the fleet's one batches run (a PostgreSQL session
    advisory lock, released with its connection if the process dies); False when another run
    holds it. Runs overlap when applying a big batch outlasts beat's interval, and two would
    only race each other over the same results. SQLite (one process): always True."""
    engine = factory.kw["bind"]
    if engine.dialect.name != "postgresql":
        yield True
        return
    with engine.connect() as conn:
        mine = bool(conn.execute(select(func.pg_try_advisory_lock(_LOCK_KEY))).scalar())
        conn.commit()
        try:
            yield mine
        finally:
            if mine:
                conn.execute(select(func.pg_advisory_unlock(_LOCK_KEY)))
                conn.commit()
