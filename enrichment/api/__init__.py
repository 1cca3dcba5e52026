"""The HTTP API (`uvicorn enrichment.api:app`): health, report, backlog, processing, metrics.

Auth: `Authorization: Bearer <tenant API key>` (stored hashed). A key only opens its own
tenant: another tenant's routes answer 404 whether or not that tenant exists, so names
cannot be probed. A missing or unknown key answers 401. `/metrics` is open unless
ENRICHMENT_METRICS_TOKEN is set, in which case it wants that bearer token.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable, Iterator
from typing import Annotated

import structlog
from fastapi import Depends, FastAPI, HTTPException, Path, Query, status
from fastapi.responses import HTMLResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from enrichment.core import db
from enrichment.core.models import Tenant, utcnow
from enrichment.core.selection import claim_due
from enrichment.core.settings import Settings, get_settings
from enrichment.core.tenants import TENANT_NAME, hash_key, key_matches
from enrichment.monitoring import prom, report_html, reports

log = structlog.get_logger(__name__)

app = FastAPI(
    title="Enrichment fleet API",
    description="Per-tenant enrichment health, reports, backlog and manual processing.",
    version="1",
)
bearer = HTTPBearer(auto_error=False)
TenantName = Annotated[
    str,
    Path(
        pattern=TENANT_NAME.pattern,
        description="tenant name: 1-63 lowercase letters, digits and '-'",
    ),
]


class ProcessResult(BaseModel):
    tenant: str
    claimed: int
    enqueued: int


def app_settings() -> Settings:
    return get_settings()


def session_factory(settings: Annotated[Settings, Depends(app_settings)]) -> sessionmaker:
    return db.session_factory(settings.database_url)


def session(factory: Annotated[sessionmaker, Depends(session_factory)]) -> Iterator[Session]:
    with factory() as s:
        yield s


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


def authorized_tenant(
    tenant: TenantName,
    s: Annotated[Session, Depends(session)],
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Tenant:
    """The path's tenant, if the bearer key is that tenant's."""
    if creds is None:
        raise _unauthorized("missing bearer API key")
    row = s.scalar(select(Tenant).where(Tenant.name == tenant))
    if row is not None and key_matches(row, creds.credentials):
        return row
    if s.scalar(select(Tenant.id).where(Tenant.api_key_hash == hash_key(creds.credentials))):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"tenant {tenant!r} not found")
    raise _unauthorized("unknown API key")


AuthTenant = Annotated[Tenant, Depends(authorized_tenant)]
DbSession = Annotated[Session, Depends(session)]
AppSettings = Annotated[Settings, Depends(app_settings)]


def enqueuer() -> Callable[[int, str, float], None]:
    """The chain enqueuer. Imported here so the API process loads Celery only when needed."""
    from workers.tasks import enqueue_chain

    return enqueue_chain


@app.get("/api/enrichment/health/{tenant}", response_model=reports.Health)
def health(tenant: AuthTenant, s: DbSession, settings: AppSettings) -> reports.Health:
    """Status now: completeness, backlog, quality, failure rate, alerts, integrity checks."""
    return reports.health(s, tenant, settings, now=utcnow())


@app.get(
    "/api/enrichment/report/{tenant}.html",
    response_class=HTMLResponse,
    responses={200: {"content": {"text/html": {}}, "description": "the report page"}},
)
def report_page(
    tenant: AuthTenant,
    s: DbSession,
    settings: AppSettings,
    hours: Annotated[float, Query(gt=0, le=720, description="trend window, hours")] = 24.0,
) -> HTMLResponse:
    """The report for people: numbers, a confidence histogram and trends, as inline SVG."""
    rep = reports.report(s, tenant, settings, now=utcnow(), hours=hours)
    return HTMLResponse(report_html.render(rep))


@app.get("/api/enrichment/report/{tenant}", response_model=reports.Report)
def report(
    tenant: AuthTenant,
    s: DbSession,
    settings: AppSettings,
    hours: Annotated[float, Query(gt=0, le=720, description="trend window, hours")] = 24.0,
) -> reports.Report:
    """Every metric of the live measurement plus the stored snapshots of the last `hours`."""
    return reports.report(s, tenant, settings, now=utcnow(), hours=hours)


@app.get("/api/enrichment/backlog/{tenant}", response_model=reports.Backlog)
def backlog(
    tenant: AuthTenant,
    s: DbSession,
    limit: Annotated[int, Query(ge=0, le=500, description="records to list")] = 20,
) -> reports.Backlog:
    """Records waiting for enrichment: counts and the next `limit` by due time."""
    return reports.backlog(s, tenant, now=utcnow(), limit=limit)


@app.post("/api/enrichment/process/{tenant}", response_model=ProcessResult)
def process(
    tenant: AuthTenant,
    factory: Annotated[sessionmaker, Depends(session_factory)],
    settings: AppSettings,
    enqueue: Annotated[Callable[[int, str, float], None], Depends(enqueuer)],
) -> ProcessResult:
    """Claim this tenant's due records (one sweep batch) and enqueue their chains now."""
    with factory.begin() as s:
        claims = claim_due(s, settings, tenant_id=tenant.id)
    # Enqueued only after the claim committed; a failed enqueue leaves the lease to expire,
    # and the sweep claims the record again.
    enqueued = 0
    try:
        for claim in claims:
            enqueue(claim.record_id, claim.lease_token, claim.countdown_s)
            enqueued += 1
    except Exception as exc:  # the broker is down: say so, the leases recover by themselves
        log.error("process.enqueue_failed", tenant=tenant.name, error=type(exc).__name__)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"claimed {len(claims)}, enqueued {enqueued}: broker unavailable; "
            "the sweep retries the rest when their leases expire",
        ) from None
    log.info("process.enqueued", tenant=tenant.name, claimed=len(claims))
    return ProcessResult(tenant=tenant.name, claimed=len(claims), enqueued=enqueued)


def metrics_auth(
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    token = os.environ.get("ENRICHMENT_METRICS_TOKEN")
    if token and (creds is None or not hmac.compare_digest(creds.credentials, token)):
        raise _unauthorized("metrics need the ENRICHMENT_METRICS_TOKEN bearer token")


@app.get(
    "/metrics",
    response_class=Response,
    dependencies=[Depends(metrics_auth)],
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
def metrics(factory: Annotated[sessionmaker, Depends(session_factory)]) -> Response:
    """The latest snapshot of every tenant, in the Prometheus text format."""
    return Response(prom.exposition(factory), media_type="text/plain; version=0.0.4")
