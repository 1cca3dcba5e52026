"""The monitor's record counts from the tallies (core/tallies.py), on PostgreSQL: a monitor
run reads a few hundred rows per tenant whatever its history.

What a tally cannot say is read from narrow indexes, each bounded by a window, not history:
- records enriched in the window and their mean time to enrich: `ix_exception_records_enriched`;
- records at or above the tenant's threshold: the tallies above the threshold's hundredth,
  plus those of that hundredth at or above it (`edge_high`): counted on whichever side of the
  threshold holds fewer of them (`ix_exception_records_confidence`), so that a confidence many
  records share (an LLM's 0.85, a threshold set to it) costs one side's few, not its many;
- stuck records (no confidence, older than the stuck limit): all unclassified less those
  younger than the limit (`idx_enrichment_pending`, keyed by created_at);
- the oldest queued review: the head of each severity class of `ix_exception_records_review_due`;
- the lead time's median (`passes.lead_time_median`, at most LEAD_TIME_SAMPLE rows).
The numbers are those of `passes.record_counts`, the scan SQLite keeps (the tests hold the two
equal on random histories).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, and_, func, literal, select
from sqlalchemy.orm import Session

from enrichment.core.models import EXCEPTION, ORDER, Tenant, in_review
from enrichment.core.models import ExceptionRecord as R
from enrichment.core.tallies import count, tally_rows
from enrichment.metrics import passes
from enrichment.reviews.queue import oldest_waiting


def record_counts(
    session: Session,
    tenant: Tenant,
    *,
    now: datetime,
    window_s: float,
    stuck_after_s: float,
    max_retries: int,
) -> dict[str, Any]:
    """`passes.record_counts` from the tallies and the bounded reads (same keys, same
    numbers)."""
    rows = tally_rows(session, tenant.id)
    edge = _cent_of(tenant.confidence_threshold)
    reads = _bounded_reads(session, tenant, now=now, window_s=window_s, stuck_after_s=stuck_after_s)
    exc = [r for r in rows if r.record_type == EXCEPTION]
    orders = [r for r in rows if r.record_type == ORDER]
    out = {
        "total": count(exc),
        "enriched": count(exc, lambda r: r.enriched),
        "backlog": count(exc, lambda r: not r.enriched and not r.escalated),
        "escalated": count(exc, lambda r: r.escalated and not r.reviewed),
        "classified": count(exc, lambda r: r.cent is not None),
        "high_confidence": count(exc, lambda r: r.cent is not None and r.cent > edge)
        + _edge_high(session, tenant, reads, count(exc, lambda r: r.cent == edge)),
        "over_retry": count(exc, lambda r: r.retries > max_retries),
        "review_backlog": count(exc, lambda r: r.queued),
        "human_resolved": count(exc, lambda r: r.human),
        "orders_watched": count(orders, lambda r: not r.enriched and not r.escalated),
        "orders_analysed": count(orders, lambda r: r.analysed),
        "problems_raised": count(rows, lambda r: r.raised),
        "problems_attached": count(rows, lambda r: r.raised and r.attached),
    }
    out["stuck"] = count(exc, lambda r: r.cent is None) - reads["recent_unclassified"]
    out.update({f"b{i}": count(exc, lambda r, i=i: r.decile == i) for i in range(10)})
    out.update({k: reads[k] for k in _READ_KEYS})
    return out


_READ_KEYS = ("enriched_in_window", "time_to_enrich_s", "oldest_review_at", "lead_time_median_s")


# How many of the threshold's hundredth either side of it is counted at most before the other
# side is tried (both sides past it: the upper side is counted whole).
EDGE_CAP = 10_000


def _edge_high(session: Session, tenant: Tenant, reads: dict[str, Any], in_edge: int) -> int:
    """Records of the threshold's hundredth at or above it: the upper side's count if under
    EDGE_CAP, else the hundredth's tally less the lower side's, else the upper side whole."""
    if reads["edge_above"] < EDGE_CAP:
        return reads["edge_above"]
    if reads["edge_below"] < EDGE_CAP:
        return in_edge - reads["edge_below"]
    above = _edge_side(tenant, above=True)
    return int(session.scalar(select(func.count()).select_from(above.subquery())))


def _edge_side(tenant: Tenant, *, above: bool, cap: int | None = None) -> Any:
    """The tenant's exceptions in the threshold's hundredth on one side of it (a range of
    `ix_exception_records_confidence`, index-only), at most `cap` of them."""
    threshold, edge = tenant.confidence_threshold, _cent_of(tenant.confidence_threshold)
    conds = [R.tenant_id == tenant.id, R.record_type == EXCEPTION, _cent_expr() == edge]
    if above:
        conds.append(R.ai_confidence >= threshold)
        if edge < 200:  # a hundredth's values lie below the end of the next one
            conds.append(R.ai_confidence < (edge + 2) / 100)
    else:
        conds.append(R.ai_confidence < threshold)
        if edge > -100:  # ... and above the start of the one before
            conds.append(R.ai_confidence >= (edge - 1) / 100)
    stmt = select(literal(1)).where(*conds)
    return stmt if cap is None else stmt.limit(cap)


def _cent_expr() -> Any:
    """The trigger's hundredth of confidence, the same arithmetic (float8)."""
    clamped = func.least(func.greatest(R.ai_confidence, -1.0), 2.0)
    return func.floor(clamped * 100).cast(Integer)


def _cent_of(threshold: float) -> int:
    return math.floor(min(max(threshold, -1.0), 2.0) * 100)


def _bounded_reads(
    session: Session, tenant: Tenant, *, now: datetime, window_s: float, stuck_after_s: float
) -> dict[str, Any]:
    """Everything a tally cannot say, as scalar subqueries of one statement."""
    tenant_id = tenant.id
    exc = (R.tenant_id == tenant_id, R.record_type == EXCEPTION)
    since = now - timedelta(seconds=window_s)
    window = and_(*exc, R.enriched_at >= since)
    # Unclassified exceptions younger than the stuck limit: a range of idx_enrichment_pending
    # (the backlog and the escalations of the limit's span).
    young_unclassified = (
        R.ai_confidence.is_(None),
        R.created_at >= now - timedelta(seconds=stuck_after_s),
    )

    def scalar(stmt: Any, name: str) -> Any:
        return stmt.scalar_subquery().label(name)

    seconds = passes.seconds_between(session, R.created_at, R.enriched_at)
    stmt = select(
        scalar(select(func.count()).where(window), "enriched_in_window"),
        scalar(select(func.avg(seconds)).where(window), "time_to_enrich_s"),
        *(
            scalar(select(func.count()).select_from(side.subquery()), name)
            for name, side in (
                ("edge_above", _edge_side(tenant, above=True, cap=EDGE_CAP)),
                ("edge_below", _edge_side(tenant, above=False, cap=EDGE_CAP)),
            )
        ),
        scalar(select(func.count()).where(*exc, *young_unclassified), "recent_unclassified"),
        oldest_waiting(*exc, in_review()).label("oldest_review_at"),
        passes.lead_time_median(session, tenant_id, now).label("lead_time_median_s"),
    )
    return dict(session.execute(stmt).one()._mapping)
