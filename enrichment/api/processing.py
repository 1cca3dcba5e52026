"""Processing routes: claim a tenant's due records and enqueue their chains now."""

from __future__ import annotations

import structlog
from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel

from enrichment.api.deps import (
    TENANT_RESPONSES,
    AppSettings,
    AuthTenant,
    Enqueue,
    Problem,
    SessionFactory,
)
from enrichment.core.selection import claim_due

log = structlog.get_logger(__name__)
router = APIRouter(responses=TENANT_RESPONSES)
BROKER_DOWN = {
    503: {"model": Problem, "description": "claimed, but the broker refused the enqueue"}
}


class ProcessResult(BaseModel):
    tenant: str
    claimed: int
    enqueued: int


@router.post(
    "/api/enrichment/process/{tenant}", response_model=ProcessResult, responses=BROKER_DOWN
)
def process(
    tenant: AuthTenant, factory: SessionFactory, settings: AppSettings, enqueue: Enqueue
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
