"""Beat's calibration refit (issue 24): a new version of a tenant's calibration map for a
source once enough new audit reviews of it arrived, and, for a tenant with `auto_threshold`,
its confidence threshold held to the error budget.

Which tenants: those with at least ENRICHMENT_CALIBRATION_REFIT_REVIEWS audit reviews since
their last map (one grouped count over all tenants: a run where nothing changed reads only
that), and every tenant with `auto_threshold` on (its reviews are read each run, so switching
it on takes effect at the next run).

Per source: the first map once it has stats.MIN_MAP_REVIEWS audit reviews; a new version
when the audit reviews outnumber those of its latest map by the refit count. Maps are fitted
on the raw confidence of the audit sample only, each review weighted by 1 / its sampling
probability (report.py's `load`); escalations are the AI's hard cases, chosen by its own
confidence, and would bias the map. Every version is kept.

The threshold: stats.search_threshold on the tenant's audit reviews, each scored by the
latest map of its source (its raw confidence where the source has none: what the pipeline
compares, core/calibration_maps.py `decisive`), with the tenant's max_auto_error_rate and
ENRICHMENT_AUTO_THRESHOLD_FLOOR. A found threshold different from the tenant's is written
with one audit-log row (tenant.threshold_changed by fleet:auto-threshold, with from, to, the
bound and the reviews); none found leaves it as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from enrichment.core import audit
from enrichment.core.calibration_maps import Current, Source, StoredMap, latest_maps
from enrichment.core.models import Review, Tenant, utcnow
from enrichment.core.settings import Settings
from enrichment.core.tenant_settings import TenantSettings
from enrichment.reviews import stats
from enrichment.reviews.report import AUDIT, Reviewed, load, search, source_key

log = structlog.get_logger(__name__)


@dataclass
class Refit:
    """What one tenant's refit did."""

    tenant: str
    fitted: list[tuple[Source, int, int]] = field(default_factory=list)  # version, reviews
    threshold: tuple[float, float] | None = None  # (from, to) when it moved


def run_refit(factory: sessionmaker[Session], settings: Settings) -> list[Refit]:
    """Refit every tenant that is due, one transaction each."""
    with factory() as session:
        due = due_tenants(session, settings.reviews.refit_reviews)
    done = []
    for tenant_id in due:
        with factory.begin() as session:
            tenant = session.get(Tenant, tenant_id)
            if tenant is not None and tenant.disabled_at is None:
                done.append(refit_tenant(session, tenant, settings))
    return [r for r in done if r.fitted or r.threshold]


def due_tenants(session: Session, refit_reviews: int) -> list[int]:
    """Tenants with refit_reviews new audit reviews since their last map, or auto_threshold."""
    last = (
        select(StoredMap.tenant_id, func.max(StoredMap.fitted_at).label("at"))
        .group_by(StoredMap.tenant_id)
        .subquery()
    )
    counts = session.execute(
        select(Review.tenant_id)
        .outerjoin(last, last.c.tenant_id == Review.tenant_id)
        .where(Review.kind == AUDIT, (last.c.at.is_(None)) | (Review.created_at > last.c.at))
        .group_by(Review.tenant_id)
        .having(func.count() >= refit_reviews)
    )
    due = {row.tenant_id for row in counts}
    for tenant_id, config in session.execute(select(Tenant.id, Tenant.settings)):
        if TenantSettings.parse(config).auto_threshold:
            due.add(tenant_id)
    return sorted(due)


def refit_tenant(
    session: Session, tenant: Tenant, settings: Settings, *, now: datetime | None = None
) -> Refit:
    """New map versions where due, then the threshold if the tenant asked for it."""
    own = TenantSettings.parse(tenant.settings)
    rate = settings.reviews.audit_rate if own.audit_rate is None else own.audit_rate
    reviewed = [r for r in load(session, tenant.id, rate) if r.kind == AUDIT]
    maps = latest_maps(session, tenant.id)
    done = Refit(tenant.name)
    by_source: dict[Source, list[Reviewed]] = {}
    for r in reviewed:
        by_source.setdefault(_key(r), []).append(r)
    for source, group in sorted(by_source.items()):
        made = _refit_source(session, tenant.id, source, group, maps.get(source), settings, now)
        if made is not None:
            done.fitted.append((source, made.version, made.map.n))
            maps[source] = made
    if own.auto_threshold:
        target = own.max_auto_error_rate or settings.reviews.max_auto_error_rate
        done.threshold = move_threshold(session, tenant, reviewed, maps, target, settings)
    if done.fitted or done.threshold:
        log.info("calibration.refit", tenant=tenant.name, maps=len(done.fitted),
                 threshold=done.threshold)  # fmt: skip
    return done


def _key(r: Reviewed) -> Source:
    return source_key(r.source)


def _refit_source(
    session: Session,
    tenant_id: int,
    source: Source,
    group: Sequence[Reviewed],
    current: Current | None,
    settings: Settings,
    now: datetime | None,
) -> Current | None:
    """A new version of the source's map when it is due (module docstring), else None."""
    if current is not None and len(group) - current.map.n < settings.reviews.refit_reviews:
        return None
    fitted = stats.fit_map(
        [r.confidence for r in group], [r.agreed for r in group], [r.weight for r in group],
        now=now,
    )  # fmt: skip
    if fitted is None:
        return None
    version = 1 + (
        session.scalar(
            select(func.max(StoredMap.version)).where(
                StoredMap.tenant_id == tenant_id,
                StoredMap.provider == source[0],
                StoredMap.model == source[1],
                StoredMap.prompt_version == source[2],
            )
        )
        or 0
    )
    session.add(
        StoredMap(
            tenant_id=tenant_id, provider=source[0], model=source[1], prompt_version=source[2],
            version=version, breakpoints=fitted.to_json(), reviews=fitted.n,
            fitted_at=now or utcnow(),
        )
    )  # fmt: skip
    return Current(version, fitted)


def move_threshold(
    session: Session,
    tenant: Tenant,
    reviewed: Sequence[Reviewed],
    maps: dict[Source, Current],
    target: float,
    settings: Settings,
) -> tuple[float, float] | None:
    """Set the tenant's threshold to the search's answer; (from, to) when it moved."""
    found = search(reviewed, maps, target=target, floor=settings.reviews.auto_threshold_floor)
    before = tenant.confidence_threshold
    if found is None or abs(found.threshold - before) < 1e-9:
        return None
    tenant.confidence_threshold = found.threshold
    audit.record(
        session, tenant.id, audit.AUTO_THRESHOLD_ACTOR, audit.THRESHOLD_CHANGED, tenant.name,
        **{"from": before, "to": found.threshold, "bound": found.upper,
           "reviews": found.reviews, "target": target},
    )  # fmt: skip
    return before, found.threshold
