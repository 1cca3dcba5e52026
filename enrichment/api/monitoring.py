"""Monitoring routes: a tenant's health, report (JSON and HTML), backlog; Prometheus.

`router` holds the tenant routes (401/404 documented on each); `metrics_router` holds
/metrics, which belongs to no tenant and never answers 404."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from enrichment.api import deps
from enrichment.api.deps import (
    CHALLENGE,
    TENANT_RESPONSES,
    AppSettings,
    AuthTenant,
    DbSession,
    Problem,
    SessionFactory,
    as_json,
    metrics_auth,
)
from enrichment.core.models import utcnow
from enrichment.core.settings import Settings
from enrichment.metrics import prom
from enrichment.reporting import backlog as backlog_view
from enrichment.reporting import report_html, reports

log = structlog.get_logger(__name__)
router = APIRouter(responses=TENANT_RESPONSES)
metrics_router = APIRouter()
Hours = Annotated[float, Query(gt=0, le=720, description="trend window, hours")]


@router.get("/api/enrichment/health/{tenant}", response_model=reports.Health)
def health(tenant: AuthTenant, s: DbSession, settings: AppSettings) -> reports.Health:
    """Status now: completeness, backlog, quality, failure rate, alerts, integrity checks,
    and `notices` (INFO: early signs such as a rising failure rate, never pushed)."""
    return reports.health(s, tenant, settings, now=utcnow())


@router.get(
    "/api/enrichment/report/{tenant}.html",
    response_class=HTMLResponse,
    responses={
        200: {"content": {"text/html": {}}, "description": "the report page"},
        **as_json(TENANT_RESPONSES),
    },
)
def report_page(
    request: Request, tenant: AuthTenant, s: DbSession, settings: AppSettings, hours: Hours = 24.0
) -> HTMLResponse:
    """The report for people: status in plain words, figures, a confidence histogram and
    trends as inline SVG, escalations and alerts with their reasons. No JavaScript, no CDN."""
    rep = reports.report(s, tenant, settings, now=utcnow(), hours=hours)
    return HTMLResponse(report_html.render(rep, nonce=request.state.csp_nonce))


@router.get("/api/enrichment/report/{tenant}", response_model=reports.Report)
def report(
    tenant: AuthTenant, s: DbSession, settings: AppSettings, hours: Hours = 24.0
) -> reports.Report:
    """Every metric of the live measurement plus the stored snapshots of the last `hours`."""
    return reports.report(s, tenant, settings, now=utcnow(), hours=hours)


@router.get("/api/enrichment/backlog/{tenant}", response_model=backlog_view.Backlog)
def backlog(
    tenant: AuthTenant,
    s: DbSession,
    limit: Annotated[int, Query(ge=0, le=500, description="records to list")] = 20,
) -> backlog_view.Backlog:
    """Records waiting for enrichment: counts and the next `limit` by due time; and the
    escalated records (oldest `limit`, oldest first) with their reasons."""
    return backlog_view.backlog(s, tenant, now=utcnow(), limit=limit)


METRICS_RESPONSES: dict[int | str, dict] = {
    200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
    401: {
        "model": Problem,
        "description": "ENRICHMENT_METRICS_TOKEN is set and the request lacks that bearer token",
        "headers": CHALLENGE,
    },
    403: {
        "model": Problem,
        "description": "closed: neither ENRICHMENT_METRICS_TOKEN nor ENRICHMENT_METRICS_OPEN=1",
    },
}
# The bearer token is wanted only when ENRICHMENT_METRICS_TOKEN is set, so the scheme is
# optional. FastAPI declares [{"HTTPBearer": []}] from the dependency and appends
# openapi_extra's list to it: "bearer, or nothing". Bearer alone would be untrue of an open
# deployment (schemathesis' ignored_auth check catches exactly that).
OPTIONAL_BEARER = {"security": [{}]}


def announce_metrics(settings: Settings) -> None:
    """One start-up line: how /metrics answers, so a closed endpoint is no surprise."""
    if settings.metrics_token:
        log.info("metrics.token", detail="/metrics wants the ENRICHMENT_METRICS_TOKEN bearer")
    elif settings.metrics_open:
        log.warning("metrics.open", detail="/metrics is open to anyone (ENRICHMENT_METRICS_OPEN)")
    else:
        log.warning("metrics.closed", detail=deps.METRICS_CLOSED)


@metrics_router.get(
    "/metrics",
    response_class=Response,
    dependencies=[Depends(metrics_auth)],
    responses=METRICS_RESPONSES,
    openapi_extra=OPTIONAL_BEARER,
)
def metrics(factory: SessionFactory, settings: AppSettings) -> Response:
    """The latest snapshot of every tenant, and the fleet's autoscaling signals (the broker's
    queue depths, live workers, `enrichment_desired_workers`), in the Prometheus text format."""
    from workers import queues  # the Celery layer, imported when first scraped

    body = prom.exposition(factory, settings, broker=queues.read_broker(settings))
    return Response(body, media_type="text/plain; version=0.0.4")
