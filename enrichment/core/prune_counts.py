"""What the pruner removed, per tenant and table, since the table was created: the counters
`/metrics` shows (`enrichment_pruned_rows_total`). A chunk adds its count in the transaction
that deletes its rows, so the counter never disagrees with the tables."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from enrichment.core.batch_models import BatchRecord
from enrichment.core.models import Base, OutboxEvent, Tenant, UTCDateTime


class PruneCount(Base):
    """Rows of one table pruned for one tenant, and when the last of them went."""

    __tablename__ = "prune_counts"

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    table_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    rows: Mapped[int] = mapped_column(BigInteger)
    pruned_at: Mapped[datetime] = mapped_column(UTCDateTime)


def add(s: Session, tenant_id: int, table_name: str, rows: int, *, now: datetime) -> None:
    """Add `rows` to the tenant's counter for `table_name`, in the caller's transaction."""
    insert = (postgresql if s.get_bind().dialect.name == "postgresql" else sqlite).insert
    stmt = insert(PruneCount).values(
        tenant_id=tenant_id, table_name=table_name, rows=rows, pruned_at=now
    )
    s.execute(
        stmt.on_conflict_do_update(
            index_elements=[PruneCount.tenant_id, PruneCount.table_name],
            set_={"rows": PruneCount.rows + stmt.excluded.rows, "pruned_at": now},
        )
    )


def all_counts(s: Session) -> list[tuple[str, str, int, datetime]]:
    """(tenant name, table, rows, pruned at) for every counter, by tenant and table."""
    P = PruneCount
    stmt = (
        select(Tenant.name, P.table_name, P.rows, P.pruned_at)
        .join(Tenant, Tenant.id == P.tenant_id)
        .order_by(Tenant.name, P.table_name)
    )
    return [tuple(row) for row in s.execute(stmt)]


# The pruner's indexes (enrichment/history/retention.py; migration 0018), declared here beside
# its table: each tenant's events oldest first, and whether a batch row refers to a record.
Index("ix_outbox_events_tenant_created", OutboxEvent.tenant_id, OutboxEvent.created_at)
Index("ix_batch_records_record_id", BatchRecord.record_id)
