"""The FastAPI application: every router, one app.

Auth: `Authorization: Bearer <tenant API key>` (stored hashed). A key only opens its own
tenant: another tenant's routes answer 404 whether or not that tenant exists, so names
cannot be probed. A missing or unknown key answers 401. `/metrics` is open unless
ENRICHMENT_METRICS_TOKEN is set, in which case it wants that bearer token.
"""

from __future__ import annotations

from fastapi import FastAPI

from enrichment.api import monitoring, processing

app = FastAPI(
    title="Enrichment fleet API",
    description="Per-tenant enrichment health, reports, backlog and manual processing.",
    version="1",
)
app.include_router(monitoring.router)
app.include_router(processing.router)
