"""The review page's refused sign-ins per tenant, read from `signin_refusals` at scrape time
(`enrichment_review_signin_refusals`), and by the monitor for each snapshot, whose
`signin_refusals_warning` rule alerts on a burst of wrong reviewer keys. The API also logs
`review.signin_burst` when one locks a tenant or an address out."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.selectable import ScalarSelect

from enrichment.core.models import Tenant, utcnow
from enrichment.core.review_sessions import METRIC_WINDOW_S, SigninRefusal


def recent(tenant_id: int, *, now: datetime) -> ScalarSelect[int]:
    """The tenant's wrong reviewer keys in the METRIC_WINDOW_S before `now`, as a scalar
    subquery (the monitor's `signin_refusals`, judged by the signin_refusals_warning rule)."""
    since = now - timedelta(seconds=METRIC_WINDOW_S)
    return (
        select(func.count(SigninRefusal.id))
        .where(
            SigninRefusal.tenant_id == tenant_id,
            SigninRefusal.refused_at > since,
            SigninRefusal.refused_at <= now,
        )
        .scalar_subquery()
    )


def refusals_by_tenant(session: Session) -> list[tuple[str, int]]:
    """Each tenant's wrong reviewer keys in the last METRIC_WINDOW_S (tenants with none: 0)."""
    since = utcnow() - timedelta(seconds=METRIC_WINDOW_S)
    recent = func.count(SigninRefusal.id).filter(SigninRefusal.refused_at > since)
    stmt = (
        select(Tenant.name, recent)
        .outerjoin(SigninRefusal, SigninRefusal.tenant_id == Tenant.id)
        .group_by(Tenant.name)
        .order_by(Tenant.name)
    )
    return [(name, count) for name, count in session.execute(stmt)]


class SigninCollector:
    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory

    def collect(self) -> Iterator[Metric]:
        with self.factory() as session:
            rows = refusals_by_tenant(session)
        gauge = GaugeMetricFamily(
            "enrichment_review_signin_refusals",
            f"Wrong reviewer keys on the review page in the last {METRIC_WINDOW_S:.0f} s",
            labels=["tenant"],
        )
        for name, count in rows:
            gauge.add_metric([name], count)
        yield gauge
