"""A tenant's webhook delivery log over the API: its newest delivery attempts (the same rows
as `enrichment webhook log`; core/delivery_log.py). Never the URL, a secret or a body."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from enrichment.api.deps import TENANT_RESPONSES, AuthTenant, DbSession
from enrichment.core import delivery_log

router = APIRouter(responses=TENANT_RESPONSES)


class Deliveries(BaseModel):
    tenant: str
    items: list[delivery_log.DeliveryItem] = Field(description="newest first")


@router.get("/api/enrichment/webhook/{tenant}/deliveries", response_model=Deliveries)
def deliveries(
    tenant: AuthTenant,
    s: DbSession,
    limit: Annotated[int, Query(ge=1, le=delivery_log.MAX_PAGE)] = 50,
) -> Deliveries:
    """The tenant's newest webhook delivery attempts, newest first: each POST of an event
    (`outcome` delivered, retried, stopped, dead or lost) or of a `webhook.test` (`test`),
    with the HTTP status or the network error and how long it took. The last
    1,000 per tenant are kept."""
    return Deliveries(tenant=tenant.name, items=delivery_log.recent(s, tenant.id, limit=limit))
