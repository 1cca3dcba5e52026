"""A tenant's reviewers (add, list, revoke) and its audit log, over the API.

The tenant's API key manages its reviewers (an operator's integration; the CLI does the same
as `enrichment reviewer`). A new reviewer's key is in the 201's body, once: only its hash is
kept. Revoking ends the reviewer's review page sessions at once. Every change is written with
its audit row, by the API key (`api-key:<fingerprint>`).
"""

from __future__ import annotations

from typing import Annotated

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
from enrichment.core import audit, reviewers
from enrichment.core.reviewers import ReviewerOut

router = APIRouter(responses=TENANT_RESPONSES, route_class=StrictJsonRoute)
Name = Annotated[str, Path(min_length=1, max_length=64, description="the reviewer's name")]


class NewReviewer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, description=reviewers.BAD_NAME)


class AddedReviewer(ReviewerOut):
    key: str = Field(description="their own review page key: shown this once, never again")


class Reviewers(BaseModel):
    tenant: str
    reviewers: list[ReviewerOut] = Field(description="by name")


class AuditPage(BaseModel):
    tenant: str
    items: list[audit.AuditItem] = Field(description="oldest first")
    next_after: int | None = Field(
        description="pass as `after` for the next page; null: nothing more for now"
    )


def _refused(exc: reviewers.ReviewerError) -> HTTPException:
    return HTTPException(exc.status, str(exc))


@router.post(
    "/api/enrichment/reviewers/{tenant}",
    status_code=status.HTTP_201_CREATED,
    response_model=AddedReviewer,
    responses={
        **UNREADABLE_BODY,
        **TOO_LARGE,
        **UNPROCESSABLE,
        409: {"model": Problem, "description": "an active reviewer has that name"},
    },
)
def add_reviewer(tenant: AuthTenant, factory: SessionFactory, body: NewReviewer) -> AddedReviewer:
    """Add a reviewer with a key of their own (in this answer only). The review page takes
    their name from that key: it goes on every decision they make."""
    try:
        with factory.begin() as s:
            row, key = reviewers.add(s, tenant.id, body.name)
            audit.record(s, tenant.id, key_actor(tenant), audit.REVIEWER_ADDED, row.name)
    except reviewers.ReviewerError as exc:
        raise _refused(exc) from None
    return AddedReviewer(**ReviewerOut.of(row).model_dump(), key=key)


@router.get("/api/enrichment/reviewers/{tenant}", response_model=Reviewers)
def list_reviewers(
    tenant: AuthTenant,
    s: DbSession,
    revoked: Annotated[bool, Query(description="include revoked reviewers")] = False,
) -> Reviewers:
    """The tenant's reviewers (never their keys)."""
    return Reviewers(tenant=tenant.name, reviewers=reviewers.listing(s, tenant.id, revoked=revoked))


@router.delete(
    "/api/enrichment/reviewers/{tenant}/{name}",
    response_model=ReviewerOut,
    responses={404: {"model": Problem, "description": "no active reviewer by that name"}},
)
def revoke_reviewer(tenant: AuthTenant, factory: SessionFactory, name: Name) -> ReviewerOut:
    """Revoke a reviewer: their key stops working and their sessions end at once."""
    try:
        with factory.begin() as s:
            row = reviewers.revoke(s, tenant.id, name)
            audit.record(s, tenant.id, key_actor(tenant), audit.REVIEWER_REVOKED, row.name)
    except reviewers.ReviewerError as exc:
        raise _refused(exc) from None
    return ReviewerOut.of(row)


@router.get("/api/enrichment/audit/{tenant}", response_model=AuditPage)
def audit_log(
    tenant: AuthTenant,
    s: DbSession,
    after: Annotated[int, Query(ge=0, le=2**62, description="rows after this id")] = 0,
    limit: Annotated[int, Query(ge=1, le=audit.MAX_PAGE)] = 100,
    action: Annotated[str | None, Query(max_length=48, description="only this action")] = None,
) -> AuditPage:
    """The tenant's audit log, oldest first: key rotations, reviewer changes, webhook
    changes, review sign-ins and refusals, reviews, approvals, requeues and redeliveries;
    who (`actor`), when (`at`) and what (`action`, `subject`, `details`). Append-only."""
    items = audit.entries(s, tenant.id, after=after, limit=limit, action=action)
    return AuditPage(
        tenant=tenant.name,
        items=items,
        next_after=items[-1].id if len(items) == limit else None,
    )
