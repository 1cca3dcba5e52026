"""Handing a batch's records back to the scheduler without burning a retry: a batch that
could not be created or was given up, and results that came back expired or canceled."""

from __future__ import annotations

from sqlalchemy import Connection, select, update
from sqlalchemy.orm import Session, sessionmaker

from enrichment.core import pipeline
from enrichment.core.batch_models import Batch, BatchRecord
from enrichment.core.crashpoints import crash_point
from enrichment.core.leases import released
from enrichment.core.models import ExceptionRecord as R
from enrichment.core.models import utcnow
from enrichment.core.settings import Settings
from enrichment.core.states import StageStatus, with_stage


def mark_applied(conn: Connection, rec: BatchRecord) -> bool:
    """Claim this result for this transaction; False when it was applied before."""
    marked = conn.execute(
        update(BatchRecord)
        .where(
            BatchRecord.batch_id == rec.batch_id,
            BatchRecord.record_id == rec.record_id,
            BatchRecord.applied_at.is_(None),
        )
        .values(applied_at=utcnow())
    )
    return marked.rowcount == 1


def hand_back(conn: Connection, settings: Settings, stage: str, rec: BatchRecord) -> bool:
    """The stage back to PENDING and the lease freed, so the next sweep or batch takes the
    record; nothing else changes (no attempt, no retry). False when it has moved on."""
    resumed = pipeline.resume_stage(
        conn, settings, stage, rec.record_id, rec.lease_token, rec.started_at
    )
    if resumed is None:
        return False
    run, _ = resumed
    state = with_stage(run.state, stage, StageStatus.PENDING, at=utcnow())
    freed = conn.execute(
        update(R)
        .where(
            R.id == rec.record_id,
            R.tenant_id == rec.tenant_id,
            R.lease_token == rec.lease_token,
            R.last_enrichment_attempt == rec.started_at,
        )
        .values(**released(), enrichment_state=state)
    )
    return freed.rowcount == 1


def hand_back_all(
    factory: sessionmaker[Session],
    settings: Settings,
    batch_id: int,
    status: str,
    *,
    error: str | None = None,
) -> int:
    """Hand back every record of the batch not applied yet, then set its status. One
    transaction per record: a kill part way leaves the batch in its old status with the
    rest not applied, and the next run that meets it hands those back."""
    with factory() as s:
        engine = s.get_bind()
        batch = s.get(Batch, batch_id)
        records = s.scalars(
            select(BatchRecord).where(
                BatchRecord.batch_id == batch_id,
                BatchRecord.tenant_id == batch.tenant_id,
                BatchRecord.applied_at.is_(None),
            )
        ).all()
        stage, tenant_id = batch.stage, batch.tenant_id
    handed = 0
    for rec in records:
        with engine.begin() as conn:
            if mark_applied(conn, rec):
                handed += hand_back(conn, settings, stage, rec)
        crash_point("batch_handback.between_records")
    with factory.begin() as s:
        s.execute(
            update(Batch)
            .where(Batch.id == batch_id, Batch.tenant_id == tenant_id)
            .values(status=status, error=error, applied_at=utcnow())
        )
    return handed
