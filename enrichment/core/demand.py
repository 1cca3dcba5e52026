"""The claim's inputs per tenant, read from the database, and the sweep stats it writes.

The claim in four modules: due (the words) -> scheduling (the pure rules) -> demand (each
tenant's inputs, read) -> selection (the claim itself, the one entry point).

Who gets how much of a claim: each tenant's due records (walked on its own index), its
in-flight cap and daily budget, its weight, and so its share (scheduling.fair_shares); and
the sweep stats that make a starved tenant visible."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, literal, select, true
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from enrichment.core import scheduling
from enrichment.core.due import claimable, in_chain, unnest
from enrichment.core.models import EnrichmentAttempt as A
from enrichment.core.models import ExceptionRecord as R
from enrichment.core.models import Tenant
from enrichment.core.monitor_models import SweepStat
from enrichment.core.settings import Settings
from enrichment.core.tenant_settings import TenantSettings

# The first demand walk reads size / this entries per tenant: enough for every tenant's
# share when more than a few tenants have work (100 tenants, batch 500: 63 each, 5 needed).
FIRST_WALK_DIVISOR = 8


@dataclass(frozen=True)
class TenantDue:
    """One tenant as a claim sees it: its due records (counted up to the claim's size), the
    `sched_at` of the first of them, and its settings."""

    tenant_id: int
    due: int
    head: datetime | None
    own: TenantSettings


def divide(
    session: Session,
    settings: Settings,
    size: int,
    now: datetime,
    tenant_id: int | None,
    *,
    for_message_batch: bool = False,
) -> tuple[list[TenantDue], dict[int, int]]:
    """The tenants with due work and each one's share of `size`. Two passes at most: most
    claims are settled by a short walk per tenant; only when the claim is not filled and some
    tenant had more than the walk saw is it walked further."""
    walk = max(1, math.ceil(size / FIRST_WALK_DIVISOR))
    tenants = tenants_due(session, settings, now, walk, tenant_id)
    shares = _shares(session, settings, tenants, size, now, for_message_batch)
    if walk < size and sum(shares.values()) < size and any(t.due >= walk for t in tenants):
        tenants = tenants_due(session, settings, now, size, tenant_id)
        shares = _shares(session, settings, tenants, size, now, for_message_batch)
    return tenants, shares


def tenants_due(
    session: Session, settings: Settings, now: datetime, size: int, tenant_id: int | None
) -> list[TenantDue]:
    """Every enabled tenant (or the one asked for) with its due records counted up to `size`.
    The one place a disabled tenant leaves the claim: every claim (chains, fifo, Message
    Batches) takes records only of the tenants this returns."""
    postgres = session.get_bind().dialect.name == "postgresql"
    query = _demand_pg(settings, now, size) if postgres else _demand_sqlite(settings, now)
    query = query.where(Tenant.disabled_at.is_(None))
    if tenant_id is not None:
        query = query.where(Tenant.id == tenant_id)
    return [
        TenantDue(tid, min(int(n or 0), size), head, TenantSettings.parse(config))
        for tid, config, n, head in session.execute(query.order_by(Tenant.id))
    ]


def _demand_pg(settings: Settings, now: datetime, size: int) -> Select:
    """Per tenant, a walk of at most `size` entries of ix_exception_records_sched (a LATERAL
    per tenant): the big tenant's million records cost no more than a small one's ten."""
    walk = (
        select(R.sched_at)
        .where(R.tenant_id == Tenant.id, claimable(now, settings))
        .order_by(R.sched_at)
        .limit(size)
        .correlate(Tenant)
        .subquery("walk")
    )
    seen = select(func.count().label("n"), func.min(walk.c.sched_at).label("head")).lateral("d")
    return select(Tenant.id, Tenant.settings, seen.c.n, seen.c.head).join(seen, true())


def _demand_sqlite(settings: Settings, now: datetime) -> Select:
    """The embedded demo (small, one process): a plain count per tenant."""
    due = (
        select(R.tenant_id, func.count().label("n"), func.min(R.sched_at).label("head"))
        .where(claimable(now, settings))
        .group_by(R.tenant_id)
        .subquery("d")
    )
    return select(Tenant.id, Tenant.settings, due.c.n, due.c.head).outerjoin(
        due, due.c.tenant_id == Tenant.id
    )


def _shares(
    session: Session,
    settings: Settings,
    tenants: list[TenantDue],
    size: int,
    now: datetime,
    for_message_batch: bool,
) -> dict[int, int]:
    """Each tenant's part of `size`: its due records within its cap and budget, weighted."""
    wanting = [t for t in tenants if t.due > 0]
    cap = {t.tenant_id: t.own.max_in_flight for t in wanting}
    budget = {t.tenant_id: t.own.daily_budget_usd for t in wanting}
    capped = [t for t, n in cap.items() if n is not None]
    budgeted = [t for t, usd in budget.items() if usd is not None]
    leased = _leased(session, settings, capped, now) if capped else {}
    spent = _spent_today(session, budgeted, now) if budgeted else {}
    # With the anthropic provider, an "always" tenant's records go by Message Batch only.
    by_batch_only = not for_message_batch and settings.ai_provider == "anthropic"
    demand = {
        t.tenant_id: 0
        if by_batch_only and t.own.batch_mode == "always"
        else scheduling.claimable_demand(
            t.due,
            leased=leased.get(t.tenant_id, 0),
            max_in_flight=cap[t.tenant_id],
            spent_usd=spent.get(t.tenant_id, 0.0),
            budget_usd=budget[t.tenant_id],
        )
        for t in wanting
    }
    weights = {t.tenant_id: t.own.weight for t in wanting}
    # Leftover seats go to the tenant whose first due record has waited longest.
    first = [t.tenant_id for t in sorted(wanting, key=lambda t: t.head or now)]
    return scheduling.fair_shares(size, demand, weights, precedence=first)


def _leased(
    session: Session, settings: Settings, tenant_ids: list[int], now: datetime
) -> dict[int, int]:
    """Records in flight in chains per tenant (a batch holds no worker):
    ix_exception_records_leased."""
    query = (
        select(R.tenant_id, func.count())
        .where(R.tenant_id.in_(tenant_ids), in_chain(now, settings))
        .group_by(R.tenant_id)
    )
    return {tid: int(n) for tid, n in session.execute(query)}


def _spent_today(session: Session, tenant_ids: list[int], now: datetime) -> dict[int, float]:
    """AI spend per tenant in the UTC day of `now`: ix_enrichment_attempts_tenant_created."""
    start, end = scheduling.utc_day(now)
    query = (
        select(A.tenant_id, func.sum(A.cost_usd))
        .where(A.tenant_id.in_(tenant_ids), A.created_at >= start, A.created_at < end)
        .group_by(A.tenant_id)
    )
    return {tid: float(usd or 0.0) for tid, usd in session.execute(query)}


def record_stats(
    session: Session, due: dict[int, int], claimed: dict[int, int], now: datetime
) -> None:
    """Upsert one sweep_stats row per tenant considered, in tenant order (two concurrent
    claims lock the rows in the same order: they queue, never deadlock)."""
    if not due:
        return
    tenants = sorted(due)
    if session.get_bind().dialect.name == "postgresql":  # one statement shape (see _pick_pg)
        rows = unnest(
            tenant_id=tenants, due=[due[t] for t in tenants], claimed=[claimed[t] for t in tenants]
        )
        stmt = pg_insert(SweepStat).from_select(
            ["tenant_id", "swept_at", "due", "claimed"],
            select(rows.c.tenant_id, literal(now, SweepStat.swept_at.type), rows.c.due,
                   rows.c.claimed),
        )  # fmt: skip
    else:
        stmt = sqlite_insert(SweepStat).values(
            [
                {"tenant_id": t, "swept_at": now, "due": due[t], "claimed": claimed[t]}
                for t in tenants
            ]
        )
    fresh = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=[SweepStat.tenant_id],
        set_={"swept_at": fresh.swept_at, "due": fresh.due, "claimed": fresh.claimed},
    )
    session.execute(stmt)
