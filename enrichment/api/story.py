"""Every record's story: its fields, stages, attempts, actions, events and escalation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status

from enrichment.api.deps import TENANT_RESPONSES, AuthTenant, DbSession, Problem
from enrichment.core import story
from enrichment.core.models import utcnow

router = APIRouter(responses=TENANT_RESPONSES)
ExternalId = Annotated[
    str, Path(min_length=1, max_length=128, description="the exception record's external id")
]


NOT_FOUND = {404: {"model": Problem, "description": "no such record, or another tenant's"}}


@router.get(
    # `path`: an external id may hold "/" (ingest allows any character); a client sends it
    # percent-encoded or as is, and either way it reaches here whole.
    "/api/enrichment/records/{tenant}/{external_id:path}",
    response_model=story.Story,
    responses=NOT_FOUND,
)
def record_story(tenant: AuthTenant, s: DbSession, external_id: ExternalId) -> story.Story:
    """One record of the tenant, by its external id: the fields now, each stage's state and
    errors, every attempt in time order (tokens, cost, model), the actions with their
    delivery state, the outbox events, the escalation, and a summary. 404: no such record."""
    found = story.story(s, tenant, external_id, now=utcnow())
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"record {external_id!r} not found")
    return found
