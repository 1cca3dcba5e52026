"""The admin API's erasure route: one customer's personal data scrubbed from an order and all
that refers to it (enrichment/history/erasure.py; the CLI does the same as `enrichment erase
TENANT --order ID`).

The operator's ENRICHMENT_ADMIN_TOKEN opens it, like the rest of the admin API (api/admin.py),
and each call writes its audit row `order.erased` by `admin:<fingerprint>`, in the
transaction that scrubs. Removing a whole tenant has no route: it is the CLI's
`enrichment erase TENANT --all --yes`, by a person at a terminal.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status
from pydantic import BaseModel, Field

from enrichment.api.admin import ADMIN_RESPONSES, _tenant
from enrichment.api.deps import AdminActor, AppSettings, Problem, SessionFactory, TenantName
from enrichment.api.guards import StrictJsonRoute
from enrichment.core import audit
from enrichment.history import erasure

router = APIRouter(responses=ADMIN_RESPONSES, route_class=StrictJsonRoute, tags=["admin"])


class OrderErased(BaseModel):
    tenant: str
    order: str
    database: dict[str, int] = Field(description="rows scrubbed per table (0: nothing left)")
    archives: dict[str, int] = Field(description="archived rows scrubbed per table")


@router.post(
    "/api/admin/tenants/{tenant}/orders/{external_id}/erase",
    response_model=OrderErased,
    responses={404: {"model": Problem, "description": "no such tenant, or no such order"}},
)
def erase_order(
    tenant: TenantName,
    external_id: Annotated[str, Path(min_length=1, max_length=128)],
    actor: AdminActor,
    factory: SessionFactory,
    settings: AppSettings,
) -> OrderErased:
    """Scrub the order's personal data (names, e-mails, phones, addresses, free text) from the
    order, its records, attempts, events, deliveries, actions, reviews and archives; counts,
    labels, states and timestamps stay. Idempotent: a second call reports zeros."""
    with factory.begin() as s:
        row = _tenant(s, tenant)
        try:
            done = erasure.erase_order(
                s, row.id, row.name, external_id, archive_dir=settings.archive_dir
            )
        except erasure.UnknownOrder as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
        audit.record(s, row.id, actor, audit.ORDER_ERASED, external_id,
                     database=done.database, archives=done.archives)  # fmt: skip
    return OrderErased(
        tenant=tenant, order=external_id, database=done.database, archives=done.archives
    )
