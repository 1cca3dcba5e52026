"""Decisions out: pull the outbox events, and report an action's outcome."""

from __future__ import annotations

from typing import Annotated

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
)
from enrichment.api.guards import StrictJsonRoute
from enrichment.delivery import actions, events

log = structlog.get_logger(__name__)
# StrictJsonRoute: a body with NaN or an infinity is a 422, never a 500.
router = APIRouter(responses=TENANT_RESPONSES, route_class=StrictJsonRoute)

After = Annotated[
    str | None,
    Query(
        description="the `next` cursor of the previous page; omit it for the first page",
        # Documented, not enforced here: a malformed cursor gets the route's own one line.
        json_schema_extra={"pattern": events.CURSOR_PATTERN},
    ),
]
Limit = Annotated[int, Query(ge=1, le=500, description="events per page")]
ActionId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the action's id")]


class OutcomeReport(BaseModel):
    """What became of an action: `done` or `failed`, with an optional note for people."""

    model_config = ConfigDict(extra="forbid")

    outcome: actions.Outcome
    note: Annotated[str | None, Field(max_length=2000)] = None


@router.get(
    "/api/enrichment/events/{tenant}", response_model=events.EventPage, responses=UNPROCESSABLE
)
def pull(tenant: AuthTenant, s: DbSession, after: After = None, limit: Limit = 100):
    """This tenant's events (record.enriched, record.escalated, action.requested) in cursor
    order, whatever their delivery status. Pass `next` as `after` to continue; an event
    committed late is never skipped. Delivered webhooks carry the same `webhook_id`."""
    try:
        cursor = events.Cursor.parse(after) if after is not None else None
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return events.page(s, tenant.id, after=cursor, limit=limit)


@router.post(
    "/api/enrichment/actions/{tenant}/{action_id}",
    response_model=actions.ActionView,
    responses={
        **UNREADABLE_BODY,
        **TOO_LARGE,
        409: {"model": Problem, "description": "the action already has a different outcome"},
    },
)
def report_outcome(
    tenant: AuthTenant, factory: SessionFactory, action_id: ActionId, report: OutcomeReport
):
    """Report an action's outcome once. The same outcome again answers 200 and changes
    nothing (safe to retry); a different one answers 409."""
    try:
        with factory.begin() as s:
            view = actions.report_outcome(s, tenant.id, action_id, report.outcome, note=report.note)
    except actions.ActionNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except actions.OutcomeConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    log.info("action.reported", tenant=tenant.name, action_id=action_id, status=view.status)
    return view
