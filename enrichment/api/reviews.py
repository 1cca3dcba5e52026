"""The review queue over the API: list it, decide a record, or hand it back to the AI.

The routes take the tenant's bearer key, like every tenant route (people use the review
page; these are for the tenant's own tools). A decision and its events (record.reviewed,
then one action.requested per new action) are committed together; beat's backstop delivery
(every 30 s) sends the events, so the API process never needs Celery for a review.
"""

from __future__ import annotations

from typing import Annotated, Any

import structlog
from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field

from enrichment.api.deps import (
    TENANT_RESPONSES,
    TOO_LARGE,
    UNPROCESSABLE,
    UNREADABLE_BODY,
    AuthTenant,
    DbSession,
    Problem,
    SessionFactory,
    key_actor,
)
from enrichment.api.guards import StrictJsonRoute
from enrichment.core import audit, reviewers, selection, story
from enrichment.core.models import utcnow
from enrichment.core.taxonomy import ALLOWED_ACTIONS
from enrichment.reviews import decide, queue

log = structlog.get_logger(__name__)
# StrictJsonRoute: a body with NaN or an infinity is a 422, never a 500.
router = APIRouter(responses=TENANT_RESPONSES, route_class=StrictJsonRoute)

Limit = Annotated[int, Query(ge=1, le=200, description="items to list, oldest first")]
# A person has the external id (the page, `enrichment show`, their own system); a tool has
# the queue's `record_id`. Either goes: `ext:` marks the external id, which may hold "/".
EXTERNAL_PREFIX = "ext:"
MAX_ID = 2**31 - 1
RecordRef = Annotated[
    str,
    Path(
        pattern=r"^(?:[1-9][0-9]{0,9}|ext:.{1,128})$",
        description="the record: its `record_id` (a queue item's, e.g. `42`) or `ext:` and "
        "its external id (e.g. `ext:EXC-1042`; percent-encode it; it may hold `/`)",
        examples=["42", "ext:EXC-1042"],
    ),
]
NOT_QUEUED = {
    404: {
        "model": Problem,
        "description": "the record is not in the review queue (nor reviewed, for an "
        "override), or it is another tenant's",
    }
}


class ReviewItem(queue.QueueItem):
    """A queue item with what a person needs to decide it: the order and the AI's history."""

    order_external_id: str
    order: dict[str, Any] = Field(description="the order's payload (untrusted text inside)")
    order_events: list[dict[str, Any]] = Field(description="the order's events, e.g. scans")
    attempts: list[story.AttemptView] = Field(description="the AI's attempts, in time order")


class ReviewQueue(BaseModel):
    tenant: str
    total: int = Field(description="items in the queue, listed or not")
    oldest_age_s: float | None = Field(description="how long the oldest item has waited")
    items: list[ReviewItem] = Field(description="oldest first, at most `limit`")


def _per_label(schema: dict[str, Any]) -> None:
    """One branch per label, each naming the actions that label allows: a body the schema
    calls valid is one the route accepts (the route checks the same allow-list, for a 422)."""
    props, required = schema.pop("properties"), schema.pop("required")
    schema.pop("additionalProperties", None)
    schema["anyOf"] = [
        {
            "type": "object",
            "additionalProperties": False,
            "required": required,
            "properties": {
                **props,
                "label": {"type": "string", "enum": [str(label)]},
                "actions": _actions_schema(props["actions"], sorted(allowed)),
            },
        }
        for label, allowed in ALLOWED_ACTIONS.items()
    ]


def _actions_schema(base: dict[str, Any], allowed: list[str]) -> dict[str, Any]:
    shape = {k: v for k, v in base.items() if k not in ("items", "default")}
    if not allowed:
        return {**shape, "maxItems": 0}
    return {**shape, "items": {"type": "string", "enum": allowed}}


class ReviewBody(decide.ReviewIn):
    """A person's decision: a label of the taxonomy, actions from that label's allow-list
    (none for SYSTEM_ERROR and OTHER), an optional note, the registered reviewer who decided
    (else the review is signed by the API key), and `override` to replace an earlier one."""

    model_config = ConfigDict(json_schema_extra=_per_label)


class ReviewOut(BaseModel):
    review_id: int
    record_id: int
    external_id: str
    label: str
    actions: list[str] = Field(description="the actions the person chose")
    new_actions: list[str] = Field(
        description="those requested now (one action.requested event each); an action "
        "already recorded for the record is not requested again"
    )
    override: bool = Field(description="this review replaces an earlier one")


class Requeued(BaseModel):
    record_id: int
    requeued: bool = Field(description="true: the next sweep hands the record to the AI again")


def _record_id(s: Any, tenant_id: int, ref: str) -> int:
    """The tenant's record id that `ref` names (RecordRef); 404 for an unknown external id."""
    if not ref.startswith(EXTERNAL_PREFIX):
        if int(ref) > MAX_ID:  # no such record, and PostgreSQL's integer would overflow
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"record {ref} not found")
        return int(ref)
    external_id = ref.removeprefix(EXTERNAL_PREFIX)
    found = story.ids_by_external(s, tenant_id, [external_id]).get(external_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"record {external_id!r} not found")
    return found


def _item(found: queue.QueueItem, order: Any, attempts: list[story.AttemptView]) -> ReviewItem:
    return ReviewItem(
        **found.model_dump(),
        order_external_id=order.external_id,
        order=order.payload,
        order_events=order.events or [],
        attempts=attempts,
    )


@router.get("/api/enrichment/reviews/{tenant}", response_model=ReviewQueue)
def review_queue(tenant: AuthTenant, s: DbSession, limit: Limit = 50) -> ReviewQueue:
    """The records waiting for a person, oldest first: escalated ones (the AI gave up) and
    the audit sample (a random share of those it resolved). Each with the reason, the AI's
    best guess if any, the order and its events, the customer's note and the attempts."""
    found = queue.queue(s, tenant.id, now=utcnow(), limit=limit)
    ids = [i.record_id for i in found.items]
    orders = story.orders_of(s, tenant.id, ids)
    attempts = story.attempts_of(s, tenant.id, ids)
    items = [_item(i, orders[i.record_id], attempts.get(i.record_id, [])) for i in found.items]
    return ReviewQueue(
        tenant=tenant.name, total=found.total, oldest_age_s=found.oldest_age_s, items=items
    )


@router.post(
    # Before the review route: its `path` parameter would take ".../ext:X/requeue" whole.
    "/api/enrichment/reviews/{tenant}/{record_id:path}/requeue",
    response_model=Requeued,
    responses={
        **NOT_QUEUED,
        409: {
            "model": Problem,
            "description": "an audit item (the AI resolved it already: review it), or a "
            "chain or a review got to the record first",
        },
    },
)
def requeue(tenant: AuthTenant, factory: SessionFactory, record_id: RecordRef) -> Requeued:
    """Hand an escalated record back to the AI instead of deciding it: its retries start
    again and the next sweep claims it (stages already completed are not paid for again)."""
    with factory.begin() as s:
        record = _record_id(s, tenant.id, record_id)
        found = queue.in_queue(s, tenant.id, record)
        if found is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"record {record_id} is not waiting for a review"
            )
        if found.escalated_at is None:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"record {found.external_id!r} is an audit sample the AI already resolved: "
                "review it instead",
            )
        if not selection.requeue(s, tenant.id, record_id=record):
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"record {found.external_id!r} was taken first (a chain holds it, or a "
                "person just reviewed it)",
            )
        audit.record(s, tenant.id, key_actor(tenant), audit.REQUEUED, found.external_id)
    log.info("review.requeued", tenant=tenant.name, record_id=record)
    return Requeued(record_id=record, requeued=True)


@router.post(
    "/api/enrichment/reviews/{tenant}/{record_id:path}",
    response_model=ReviewOut,
    responses={
        **UNREADABLE_BODY,
        **TOO_LARGE,
        **NOT_QUEUED,
        403: {
            "model": Problem,
            "description": "`reviewer` names no registered reviewer of the tenant: the key "
            "cannot sign as them",
        },
        409: {"model": Problem, "description": "already reviewed: send override to replace"},
        422: {
            **UNPROCESSABLE[422],
            "description": "a parameter or the body is not valid, or an action is not in "
            "the label's allow-list",
        },
    },
)
def review(
    tenant: AuthTenant, factory: SessionFactory, record_id: RecordRef, body: ReviewBody
) -> ReviewOut:
    """Decide a record of the queue: the review, the record's final label and actions
    (decided by "human"; the AI's fields keep what it said) and the events are committed in
    one transaction. The events go out with beat's backstop delivery within about 30 s
    (the API does not enqueue). A second review answers 409 unless it says `override`."""
    try:
        with factory.begin() as s:
            if body.reviewer is not None and reviewers.active(s, tenant.id, body.reviewer) is None:
                raise HTTPException(
                    status.HTTP_403_FORBIDDEN,
                    f"reviewer {body.reviewer!r} is not a registered reviewer of this tenant "
                    "(`enrichment reviewer list`); leave it out to sign as the API key",
                )
            record = _record_id(s, tenant.id, record_id)
            done = decide.submit(s, tenant, record, body, actor=key_actor(tenant))
    except decide.ReviewError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    log.info(
        "review.submitted", tenant=tenant.name, record_id=done.record_id, review_id=done.review_id
    )
    return ReviewOut(
        review_id=done.review_id,
        record_id=done.record_id,
        external_id=done.external_id,
        label=str(body.label),
        actions=list(dict.fromkeys(str(a) for a in body.actions)),
        new_actions=done.new_actions,
        override=body.override,
    )
