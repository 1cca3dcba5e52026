"""What every route depends on: settings, a database session, and the tenant a bearer key
opens. Every tenant route takes `AuthTenant`; the isolation tests walk `app.routes` to hold
that rule for every route."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Path, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from enrichment.api import limits
from enrichment.core import audit, db, tenants
from enrichment.core.models import Tenant
from enrichment.core.settings import Settings, get_settings
from enrichment.core.tenant_settings import TenantSettings

bearer = HTTPBearer(auto_error=False)
TenantName = Annotated[
    str,
    Path(
        pattern=tenants.TENANT_NAME.pattern,
        description="tenant name: 1-63 lowercase letters, digits and '-'",
        openapi_examples={"demo": {"summary": "the tenant `make demo` makes", "value": "demo-3pl"}},
    ),
]


class Problem(BaseModel):
    """Every error answer: what went wrong, in one line."""

    detail: str


# Every 401 says how to authenticate (RFC 9110 §11.6.1); the contract test holds it to that.
CHALLENGE = {
    "WWW-Authenticate": {
        "description": "send the key as a bearer token",
        "required": True,
        "schema": {"type": "string", "enum": ["Bearer"]},
    }
}
# The answers every tenant route can give besides its own; each router declares them.
TENANT_RESPONSES: dict[int | str, dict] = {
    401: {
        "model": Problem,
        "description": "missing or unknown bearer API key",
        "headers": CHALLENGE,
    },
    403: {"model": Problem, "description": "the tenant is disabled (its data stays)"},
    404: {"model": Problem, "description": "not found, or another tenant's (keys open one tenant)"},
    429: {
        "model": Problem,
        "description": "over the tenant's API requests per minute or requests in flight",
        "headers": {
            "Retry-After": {
                "description": "seconds to wait before trying again",
                "schema": {"type": "integer", "minimum": 1},
            }
        },
    },
}


class FieldError(BaseModel):
    """One of FastAPI's request validation errors (it adds `input` and `ctx`)."""

    loc: list[str | int]
    msg: str
    type: str


class Unprocessable(BaseModel):
    """A 422: the route's own one line, or FastAPI's list of field errors."""

    detail: str | list[FieldError]


# For a route that raises its own 422 as well: declaring 422 replaces the HTTPValidationError
# FastAPI documents by itself, so the declared answer must cover both shapes.
UNPROCESSABLE: dict[int | str, dict] = {
    422: {"model": Unprocessable, "description": "a parameter or the body is not valid"}
}
# For a route with a JSON body that FastAPI parses: a body that is not UTF-8 gets its 400.
UNREADABLE_BODY: dict[int | str, dict] = {
    400: {"model": Problem, "description": "the body could not be read (not UTF-8)"}
}
# For a route with a small body (guards.SMALL_BODY_BYTES), refused before the key is checked.
TOO_LARGE: dict[int | str, dict] = {
    413: {"model": Problem, "description": "body over the size limit (64 KiB)"}
}


def as_json(responses: dict[int | str, dict]) -> dict[int | str, dict]:
    """The same responses with each model spelled out as an application/json body.

    For routes whose own media type is not JSON: FastAPI files an additional response's model
    under the route's media type, so an HTML route would claim its JSON errors are HTML."""
    spelled = {}
    for code, response in responses.items():
        response = dict(response)
        model = response.pop("model", None)
        if model is not None:
            response["content"] = {"application/json": {"schema": model.model_json_schema()}}
        spelled[code] = response
    return spelled


def app_settings() -> Settings:
    return get_settings()


def session_factory(settings: Annotated[Settings, Depends(app_settings)]) -> sessionmaker:
    return db.api_session_factory(settings)


def session(factory: Annotated[sessionmaker, Depends(session_factory)]) -> Iterator[Session]:
    with factory() as s:
        yield s


def same_secret(given: str, expected: str) -> bool:
    """A constant-time comparison that any text survives (compare_digest refuses a non-ASCII
    str with a TypeError: a 500 for a caller who sent one)."""
    return hmac.compare_digest(given.encode(), expected.encode())


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


def authorized_tenant(
    tenant: TenantName,
    s: Annotated[Session, Depends(session)],
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Tenant:
    """The path's tenant, if the bearer key is that tenant's."""
    if creds is None:
        raise unauthorized("missing bearer API key")
    row = tenants.by_name(s, tenant)
    if row is not None and tenants.key_matches(row, creds.credentials):
        # End the lookup's transaction: its connection goes back to the pool now, not when
        # the request ends, so a route that writes through its own session never holds two.
        s.commit()
        if row.disabled_at is not None:  # only the key's holder learns it (after the match)
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"tenant {tenant} is disabled")
        return row
    key_hash = tenants.hash_key(creds.credentials)
    if s.scalar(select(Tenant.id).where(Tenant.api_key_hash == key_hash)):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"tenant {tenant!r} not found")
    raise unauthorized("unknown API key")


def limited_tenant(
    row: Annotated[Tenant, Depends(authorized_tenant)],
    settings: Annotated[Settings, Depends(app_settings)],
) -> Iterator[Tenant]:
    """The key's tenant, within its API limits (limits.py) for the whole request, or a 429."""
    own = limits.Limits.of(settings, TenantSettings.parse(row.settings))
    with limits.limiter(settings).admitted(row.name, own):
        yield row


def key_actor(tenant: Tenant) -> str:
    """Who a request with the tenant's API key is, in the audit log (a key fingerprint)."""
    return audit.api_key_actor(tenant.api_key_hash)


METRICS_CLOSED = (
    "/metrics is closed: set ENRICHMENT_METRICS_TOKEN and scrape with it as a bearer token"
    " (or ENRICHMENT_METRICS_OPEN=1 to open it to anyone)"
)


def metrics_auth(
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    settings: Annotated[Settings, Depends(app_settings)],
) -> None:
    """The token when one is set; else open only if the operator said so, else closed."""
    token = settings.metrics_token
    if token and (creds is None or not same_secret(creds.credentials, token)):
        raise unauthorized("metrics need the ENRICHMENT_METRICS_TOKEN bearer token")
    if not token and not settings.metrics_open:
        raise HTTPException(status.HTTP_403_FORBIDDEN, METRICS_CLOSED)


ADMIN_CLOSED = "the admin API is closed: set ENRICHMENT_ADMIN_TOKEN and send it as a bearer token"


def admin_actor(
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    settings: Annotated[Settings, Depends(app_settings)],
) -> str:
    """The operator, by the ENRICHMENT_ADMIN_TOKEN bearer token: who they are in the audit
    log. No token set: closed (403) to everyone; a missing or wrong token: 401."""
    token = settings.admin_token
    if not token:
        raise HTTPException(status.HTTP_403_FORBIDDEN, ADMIN_CLOSED)
    if creds is None or not same_secret(creds.credentials, token):
        raise unauthorized("the admin API needs the ENRICHMENT_ADMIN_TOKEN bearer token")
    return audit.admin_actor(token)


def enqueuer() -> Callable[[int, str, float], None]:
    """The chain enqueuer. Imported here so the API process loads Celery only when needed."""
    from workers.tasks import enqueue_chain

    return enqueue_chain


AuthTenant = Annotated[Tenant, Depends(limited_tenant)]
DbSession = Annotated[Session, Depends(session)]
AppSettings = Annotated[Settings, Depends(app_settings)]
SessionFactory = Annotated[sessionmaker, Depends(session_factory)]
Enqueue = Annotated[Callable[[int, str, float], None], Depends(enqueuer)]
AdminActor = Annotated[str, Depends(admin_actor)]
