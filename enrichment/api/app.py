"""The FastAPI application: every router, one app.

Auth: `Authorization: Bearer <tenant API key>` (stored hashed). A key only opens its own
tenant: another tenant's routes answer 404 whether or not that tenant exists, so names
cannot be probed. A missing or unknown key answers 401. `/metrics` wants the
ENRICHMENT_METRICS_TOKEN bearer token; with no token it is closed (403) unless
ENRICHMENT_METRICS_OPEN=1 opens it to anyone.

Every request goes through `guards.Guard` first: a request id, the body limit (before
authentication and parsing), the security headers, and a 500 that names the request id.

`/docs` serves Swagger UI from the files of the `swagger-ui-bundle-v2` package, not from a
CDN, so the docs work on an air-gapped deployment (FastAPI's "self-hosting JavaScript and
CSS for docs" recipe).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from swagger_ui_bundle import swagger_ui_path

from enrichment.api import (
    admin,
    deps,
    erasure,
    events,
    experiments,
    guards,
    limits,
    monitoring,
    orders,
    people,
    probes,
    processing,
    records,
    review_page,
    review_queue_page,
    reviews,
    story,
    webhook_log,
)

SWAGGER_ASSETS = "/docs-assets"


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    """Settings read (and wrong ones refused) at start-up; says whether /metrics is open."""
    monitoring.announce_metrics(deps.app_settings())
    limits.announce(deps.app_settings())
    yield


app = FastAPI(
    title="Enrichment fleet API",
    description="Per-tenant enrichment health, reports, backlog and manual processing.",
    version="1",
    docs_url=None,
    # ReDoc would load its script from a CDN, which an air-gapped deployment cannot reach.
    redoc_url=None,
    lifespan=lifespan,
)
app.add_middleware(guards.Guard)
POOL_BUSY = "the database has no free connection for this request now: try again in a moment"


@app.exception_handler(PoolTimeout)
async def pool_busy(_: Request, __: PoolTimeout) -> JSONResponse:
    """Every pooled connection stayed busy for ENRICHMENT_API_POOL_TIMEOUT_S: a 503 the caller
    can retry, not a 500."""
    return JSONResponse({"detail": POOL_BUSY}, status_code=503, headers={"Retry-After": "1"})


@app.exception_handler(StarletteHTTPException)
async def with_every_allowed_method(request: Request, exc: StarletteHTTPException) -> Response:
    """A 405's Allow names every method of the path: Starlette names only those of the first
    route that matched the path, when routes of one path are declared one method each."""
    if exc.status_code == 405:
        allowed = sorted(
            method
            for route in request.app.routes
            if isinstance(route, APIRoute) and route.matches(request.scope)[0] != Match.NONE
            for method in route.methods
        )
        exc.headers = {**(exc.headers or {}), "Allow": ", ".join(allowed)}
    return await http_exception_handler(request, exc)


probes.install(app)  # start-up check, /livez and /readyz, a 503 while the database is down
app.mount(SWAGGER_ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")
app.include_router(monitoring.router)
app.include_router(monitoring.metrics_router)
app.include_router(processing.router)
app.include_router(records.router)
app.include_router(orders.router)
app.include_router(story.router)
app.include_router(events.router)
app.include_router(reviews.router)
app.include_router(people.router)
app.include_router(review_queue_page.router)  # before review_page: its fixed paths
app.include_router(review_page.router)
app.include_router(admin.router)
app.include_router(erasure.router)
app.include_router(webhook_log.router)
app.include_router(experiments.router)


@app.get("/docs", include_in_schema=False)
def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI on the local assets; no validator badge (it would call swagger.io)."""
    root = request.scope.get("root_path", "").rstrip("/")
    return get_swagger_ui_html(
        openapi_url=f"{root}{app.openapi_url}",
        title=f"{app.title} - Swagger UI",
        swagger_js_url=f"{root}{SWAGGER_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{SWAGGER_ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{root}{SWAGGER_ASSETS}/favicon-32x32.png",
        swagger_ui_parameters={"validatorUrl": None},
    )
