"""A tenant's new exception that the order analysis saw first: attached, not duplicated.

When a new exception names an order for which the order analysis raised an exception of the
same problem (its reason code names the raised label: `taxonomy.reason_label`), and none of
the tenant's has attached to that one yet, the raised record takes the tenant's external id
and inputs and `attached_at` is set; it keeps its place in the pipeline and its story (and
`created_at` - `attached_at` is how far ahead the fleet was). The item's answer is `updated`
with the reason. Called by `write` with the chunk's orders already locked, the lock the
order analysis takes before it raises (core/order_raise.py).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from enrichment.core.models import RAISED_BY_AI, ExceptionRecord
from enrichment.core.taxonomy import reason_label
from enrichment.ingestion.lines import Good, Key
from enrichment.ingestion.plan import UPDATED, ItemResult

_R = ExceptionRecord
ATTACHED = "attached to the exception the order analysis raised: {}"


def attach(
    session: Session, goods: list[Good], order_ids: dict[Key, int], now: datetime
) -> dict[int, ItemResult]:
    """Attach what can be attached among new lines `goods`; their results by `pos`."""
    raised = _open_raised(session, {(g.tenant_id, order_ids[g.order_key]) for g in goods})
    done: dict[int, ItemResult] = {}
    for good in goods:
        label = reason_label(good.line.exception.reason_code)
        key = (good.tenant_id, order_ids[good.order_key], str(label))
        found = raised.pop(key, None) if label else None
        if found is not None:
            record_id, raised_as = found
            _take_over(session, good, record_id, now)
            ext = good.line.exception.external_id
            reason = ATTACHED.format(raised_as)
            done[good.pos] = ItemResult(good.pos, UPDATED, ext, "exception.external_id", reason)
    return done


def _open_raised(session: Session, orders: set[tuple[int, int]]) -> dict:
    """(tenant, order, label) -> (record id, external id) of raised, unattached exceptions."""
    if not orders:
        return {}
    rows = session.execute(
        select(_R.id, _R.tenant_id, _R.order_id, _R.reason_code, _R.external_id).where(
            _R.tenant_id.in_({t for t, _ in orders}),
            _R.order_id.in_({o for _, o in orders}),
            _R.source == RAISED_BY_AI,
            _R.attached_at.is_(None),
        )
    )
    return {
        (r.tenant_id, r.order_id, r.reason_code): (r.id, r.external_id)
        for r in rows
        if (r.tenant_id, r.order_id) in orders
    }


def _take_over(session: Session, good: Good, record_id: int, now: datetime) -> None:
    session.execute(
        update(_R)
        .where(_R.id == record_id, _R.tenant_id == good.tenant_id)
        .values(
            external_id=good.line.exception.external_id,
            **good.inputs(),
            attached_at=now,
            updated_at=now,
        )
    )
