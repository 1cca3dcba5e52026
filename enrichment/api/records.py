"""Records in: POST a batch of orders and exceptions (the ingest line format).

The body is capped at MAX_BODY_BYTES by `guards.Guard` (declared or chunked, before the key
is checked), refused with 422 if it holds NaN or an infinity, and handed to
`enrichment.ingestion.items`, which validates and writes every item the way
`enrichment ingest FILE` does a line. One answer per item, in order; a rejected item writes
nothing and does not stop the others (the answer is 200 all the same).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from enrichment.api import guards
from enrichment.api.deps import (
    TENANT_RESPONSES,
    UNPROCESSABLE,
    AuthTenant,
    Problem,
    SessionFactory,
)
from enrichment.ingestion import items as records_in
from enrichment.ingestion.lines import LineIn
from enrichment.ingestion.plan import ItemResult

router = APIRouter(responses=TENANT_RESPONSES)


class ItemIn(LineIn):
    """An item: a line of `enrichment ingest`, whose `tenant` may be left out."""

    tenant: str | None = Field(default=None, description="if given, the route's tenant")


class ItemOut(BaseModel):
    index: int = Field(description="the item's 0-based place in `items`")
    external_id: str | None = Field(description="the exception's external id, if readable")
    result: Literal["created", "updated", "unchanged", "rejected"]
    field: str | None = Field(description='what was rejected or changed, e.g. "order.events.0.at"')
    reason: str | None = Field(description="why it was rejected, or a note on an update")
    reopened: bool = Field(description="an enriched record reopened for re-enrichment")


class RecordsOut(BaseModel):
    tenant: str
    created: int
    updated: int
    unchanged: int
    rejected: int
    reopened: int
    items: list[ItemOut]


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    """`schema` with its `$ref`s to `$defs` replaced by the definitions (no models recurse):
    a request body schema in OpenAPI cannot point into its own `$defs`."""
    if isinstance(schema, list):
        return [_inline(s, defs) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        return _inline(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    return {k: _inline(v, defs) for k, v in schema.items() if k != "$defs"}


def _body_doc() -> dict[str, Any]:
    """The body as documented: `{"items": [...]}`. Each item is shown in the line format, but
    any JSON value is accepted there: items are judged one by one, and one that does not fit
    is `rejected` in the answer (with the field and the reason), not the whole body."""
    item = ItemIn.model_json_schema()
    shape = _inline(item, item.get("$defs", {}))
    items = {
        "type": "array",
        "minItems": 1,
        "maxItems": records_in.MAX_ITEMS,
        "items": {"anyOf": [shape, {"description": "anything else: rejected, item by item"}]},
    }
    body = {
        "type": "object",
        "required": ["items"],
        "additionalProperties": False,
        "properties": {"items": items},
    }
    content = {"application/json": {"schema": body}}
    return {"requestBody": {"required": True, "content": content}}


def _answer(tenant: str, results: list[ItemResult]) -> RecordsOut:
    items = [
        ItemOut(
            index=r.pos,
            external_id=r.external_id,
            result=r.result,
            field=r.field,
            reason=r.reason,
            reopened=r.reopened,
        )
        for r in results
    ]
    counts = {k: sum(i.result == k for i in items) for k in ("created", "updated", "unchanged")}
    rejected = sum(i.result == "rejected" for i in items)
    reopened = sum(i.reopened for i in items)
    return RecordsOut(tenant=tenant, **counts, rejected=rejected, reopened=reopened, items=items)


@router.post(
    "/api/enrichment/records/{tenant}",
    response_model=RecordsOut,
    responses={
        413: {"model": Problem, "description": "body over the size limit (10 MB)"},
        422: {
            **UNPROCESSABLE[422],
            "description": 'a bad tenant name, or a body that is not {"items": [...]} with '
            "1-1000 items, or one holding NaN or an infinity",
        },
    },
    openapi_extra=_body_doc(),
)
async def post_records(request: Request, tenant: AuthTenant, factory: SessionFactory) -> RecordsOut:
    """Create or update the tenant's exception records with their orders, one result per
    item. Replaying an item is `unchanged`; an item whose stored inputs differ is `updated`,
    and an enriched record is re-enriched only when its item says `"reenrich": true`."""
    try:
        items = records_in.parse_body(await request.body())
    except records_in.BodyError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    guards.check_finite(items)
    # The writes block on the database: off the event loop.
    results = await run_in_threadpool(
        records_in.ingest_items, factory, tenant.id, tenant.name, items
    )
    return _answer(tenant.name, results)
