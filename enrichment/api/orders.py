"""Orders in without an exception, and their events as they happen (issue 25).

`POST /api/enrichment/orders/{tenant}` takes `{"items": [ORDER, ...]}`, each item a records
item's `order`; `POST /api/enrichment/orders/{tenant}/{external_id}/events` appends events to
one stored order. Every order is watched: the order analysis looks at it on arrival, when
events arrive and when a deadline it waits on passes (enrichment/ingestion/orders.py,
core/order_watch.py). Bodies are capped by `guards.Guard` like every body.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Path, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from enrichment.api import guards
from enrichment.api.deps import TENANT_RESPONSES, UNPROCESSABLE, AuthTenant, SessionFactory
from enrichment.core.record_limits import MAX_EVENTS
from enrichment.ingestion import items as records_in
from enrichment.ingestion import orders as orders_in
from enrichment.ingestion.lines import EventIn, LineError, OrderIn
from enrichment.providers.prompts.tools import schema_of

router = APIRouter(responses=TENANT_RESPONSES)


def _body_doc(key: str, item: dict[str, Any], max_items: int) -> dict[str, Any]:
    """The documented body `{key: [item, ...]}` (the models validate it; see the docstring)."""
    array = {"type": "array", "minItems": 1, "maxItems": max_items, "items": item}
    body = {
        "type": "object",
        "required": [key],
        "additionalProperties": False,
        "properties": {key: array},
    }
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": body}}}}


# As the records route: any item is accepted, and one that does not fit is `rejected` alone.
ORDERS_DOC = _body_doc(
    "items",
    {"anyOf": [schema_of(OrderIn), {"description": "anything else: rejected, item by item"}]},
    records_in.MAX_ITEMS,
)


def _event_doc() -> dict[str, Any]:
    """An event as documented: its source's rule spelled out (order_events.SOURCE_RULE)."""
    event = schema_of(EventIn)
    event["properties"]["source"] = {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,32}$"}
    return event


EVENTS_DOC = _body_doc("events", _event_doc(), MAX_EVENTS)


class OrderItemOut(BaseModel):
    index: int = Field(description="the item's 0-based place in `items`")
    external_id: str | None = Field(description="the order's external id, if readable")
    result: Literal["created", "updated", "unchanged", "rejected"]
    field: str | None = Field(description='what was rejected, e.g. "events.0.at"')
    reason: str | None = Field(description="why it was rejected")


class OrdersOut(BaseModel):
    tenant: str
    created: int
    updated: int
    unchanged: int
    rejected: int
    items: list[OrderItemOut]


class EventsOut(BaseModel):
    tenant: str
    order: str
    added: int = Field(description="events not already stored (same source, type and time)")


@router.post(
    "/api/enrichment/orders/{tenant}",
    response_model=OrdersOut,
    responses={422: {**UNPROCESSABLE[422], "description": 'not {"items": [...]} of 1-1000'}},
    openapi_extra=ORDERS_DOC,
)
async def post_orders(request: Request, tenant: AuthTenant, factory: SessionFactory) -> OrdersOut:
    """Create or update the tenant's orders (no exception needed), each watched by the order
    analysis. One result per item; a rejected item writes nothing and stops no other."""
    try:
        items = records_in.parse_body(await request.body())
    except records_in.BodyError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    guards.check_finite(items)
    results = await run_in_threadpool(orders_in.ingest_orders, factory, tenant.id, items)
    out = [
        OrderItemOut(
            index=r.pos, external_id=r.external_id, result=r.result, field=r.field, reason=r.reason
        )
        for r in results
    ]
    counts = {k: sum(i.result == k for i in out) for k in ("created", "updated", "unchanged")}
    rejected = sum(i.result == "rejected" for i in out)
    return OrdersOut(tenant=tenant.name, **counts, rejected=rejected, items=out)


@router.post(
    "/api/enrichment/orders/{tenant}/{external_id}/events",
    response_model=EventsOut,
    responses={422: {**UNPROCESSABLE[422], "description": 'not {"events": [...]}, or a bad event'}},
    openapi_extra=EVENTS_DOC,
)
async def post_order_events(
    request: Request,
    tenant: AuthTenant,
    factory: SessionFactory,
    external_id: str = Path(min_length=1, max_length=128),
) -> EventsOut:
    """Append events to one of the tenant's orders (merged: a known event is not added
    twice). New events make its watch analyse it again at once."""
    try:
        events = orders_in.parse_events(await request.body())
        added = await run_in_threadpool(
            orders_in.append_events, factory, tenant.id, external_id, events
        )
    except (records_in.BodyError, LineError) as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    if added is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"order {external_id!r} not found")
    return EventsOut(tenant=tenant.name, order=external_id, added=added)
