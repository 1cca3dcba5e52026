"""The operator's admin API: tenants listed, shown, their settings changed, disabled and
enabled, without SQL (core/tenant_admin.py; the CLI does the same as `enrichment tenant`).

Authenticated by the operator's ENRICHMENT_ADMIN_TOKEN bearer token, never a tenant's key:
with no token set the admin API is closed (403 to everyone); a missing or wrong token is a
401. These routes name a tenant in their path but are not tenant-key routes
(tests/routes.py ADMIN). Every change is written with its audit row, by
`admin:<fingerprint of the token>`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, status
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from enrichment.api.deps import (
    CHALLENGE,
    TOO_LARGE,
    UNPROCESSABLE,
    UNREADABLE_BODY,
    AdminActor,
    AppSettings,
    Problem,
    SessionFactory,
    TenantName,
)
from enrichment.api.guards import StrictJsonRoute
from enrichment.core import tenant_admin, tenants
from enrichment.core.models import Tenant
from enrichment.core.tenant_settings import TenantSettingsError

ADMIN_RESPONSES: dict[int | str, dict] = {
    401: {
        "model": Problem,
        "description": "missing or wrong ENRICHMENT_ADMIN_TOKEN bearer token",
        "headers": CHALLENGE,
    },
    403: {"model": Problem, "description": "the admin API is closed: no ENRICHMENT_ADMIN_TOKEN"},
}
NOT_FOUND: dict[int | str, dict] = {404: {"model": Problem, "description": "no such tenant"}}
router = APIRouter(responses=ADMIN_RESPONSES, route_class=StrictJsonRoute, tags=["admin"])


class TenantSummary(BaseModel):
    name: str
    disabled_at: datetime | None = Field(description="null: enabled")
    records: int | None = Field(description="at the monitor's last snapshot; null: none yet")
    backlog: int | None = Field(description="at the monitor's last snapshot; null: none yet")


class TenantList(BaseModel):
    tenants: list[TenantSummary] = Field(description="by name")


class Setting(BaseModel):
    key: str
    value: Any = Field(description="as it applies now; a secret's shows only as '(secret)'")
    default: bool = Field(description="true: the default applies (no value of its own)")


class TenantDetail(BaseModel):
    name: str
    disabled_at: datetime | None
    settings: list[Setting]


class SettingsChanged(BaseModel):
    tenant: str
    changed: dict[str, dict[str, Any]] = Field(
        description='key -> {"from": old, "to": new} (null: unset; secrets masked)'
    )


class Switched(BaseModel):
    tenant: str
    disabled_at: datetime | None
    changed: bool = Field(description="false: it already was")


def _tenant(s: Session, name: str) -> Tenant:
    row = tenants.by_name(s, name)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown tenant {name!r}")
    return row


@router.get("/api/admin/tenants", response_model=TenantList)
def list_tenants(_: AdminActor, factory: SessionFactory) -> TenantList:
    """Every tenant: enabled or not, its records and backlog (the monitor's last counts)."""
    with factory() as s:
        lines = tenant_admin.listing(s)
    return TenantList(tenants=[TenantSummary(**vars(line)) for line in lines])


@router.get("/api/admin/tenants/{tenant}", response_model=TenantDetail, responses=NOT_FOUND)
def show_tenant(tenant: TenantName, _: AdminActor, factory: SessionFactory) -> TenantDetail:
    """The tenant's effective settings, defaults marked, secrets masked."""
    with factory() as s:
        row = _tenant(s, tenant)
        shown = [Setting(**vars(e)) for e in tenant_admin.effective(row)]
        return TenantDetail(name=row.name, disabled_at=row.disabled_at, settings=shown)


@router.patch(
    "/api/admin/tenants/{tenant}/settings",
    response_model=SettingsChanged,
    responses={**NOT_FOUND, **UNREADABLE_BODY, **TOO_LARGE, **UNPROCESSABLE},
)
def change_settings(
    tenant: TenantName,
    actor: AdminActor,
    factory: SessionFactory,
    settings: AppSettings,
    body: Annotated[
        dict[str, Any],
        Body(
            description="keys to set (null removes one; its default applies again)",
            openapi_examples={"weight": {"summary": "twice the share", "value": {"weight": 2}}},
        ),
    ],
) -> SettingsChanged:
    """Set some of the tenant's settings: the config they make is checked whole, a bad value
    refused (422, its reason in one line) with nothing written. Takes effect at the next
    claim."""
    try:
        with factory.begin() as s:
            changed = tenant_admin.change(
                s, _tenant(s, tenant), body, actor=actor,
                allow_private=settings.webhooks.allow_private,
            )  # fmt: skip
    except TenantSettingsError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return SettingsChanged(tenant=tenant, changed=changed)


@router.post("/api/admin/tenants/{tenant}/disable", response_model=Switched, responses=NOT_FOUND)
def disable_tenant(tenant: TenantName, actor: AdminActor, factory: SessionFactory) -> Switched:
    """The claim skips its records; its API key and reviewers are refused; its data stays."""
    return _switch(factory, tenant, True, actor)


@router.post("/api/admin/tenants/{tenant}/enable", response_model=Switched, responses=NOT_FOUND)
def enable_tenant(tenant: TenantName, actor: AdminActor, factory: SessionFactory) -> Switched:
    """Undo a disable: its records are claimed again at the next sweep, its keys work."""
    return _switch(factory, tenant, False, actor)


def _switch(factory, tenant: str, disabled: bool, actor: str) -> Switched:
    with factory.begin() as s:
        row = _tenant(s, tenant)
        changed = tenant_admin.set_disabled(s, row, disabled, actor=actor)
        return Switched(tenant=row.name, disabled_at=row.disabled_at, changed=changed)
