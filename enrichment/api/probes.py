"""Whether the API can serve: checked at start-up, probed by orchestrators, said in a 503.

- At start-up (`StartupCheck`, the lifespan's first step) the database must answer and be at
  the migrations' head, and the broker must answer: else uvicorn logs one line and exits.
- `/livez`: the process answers (no I/O). `/readyz`: the same checks as start-up, 200 or a
  503 with the reason. Both belong to no tenant and name no host, user or database.
- A request whose database is down or not migrated answers 503 with one line and
  Retry-After, not a 500.
"""

from __future__ import annotations

import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError, ProgrammingError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from enrichment.api.deps import AppSettings, Problem, app_settings
from enrichment.core import readiness
from enrichment.core.settings import ConfigurationError, Settings

log = structlog.get_logger(__name__)
router = APIRouter(tags=["probes"])
RETRY_AFTER_S = 5


class Ready(Problem):
    """`ok`, or why not (`detail`)."""


def problem(settings: Settings, *, public: bool) -> str | None:
    from workers import readiness as fleet  # the Celery layer: the broker's check

    return fleet.problem(settings, public=public)


@router.get("/livez", response_model=Ready)
def livez() -> Ready:
    """The process answers requests; touches nothing else."""
    return Ready(detail="ok")


@router.get("/readyz", response_model=Ready, responses={503: {"model": Ready}})
def readyz(settings: AppSettings) -> JSONResponse:
    """The database answers and is at the migrations' head, and the broker answers."""
    found = problem(settings, public=True)
    if found is None:
        return JSONResponse({"detail": "ok"})
    return JSONResponse(
        {"detail": found}, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)}
    )


async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """A connection refused or lost, or a table missing: 503, one line, Retry-After.
    Any other database error is a bug: re-raised, it becomes the guard's 500."""
    if isinstance(exc, ProgrammingError) and not (
        readiness.missing_table(exc) or readiness.missing_column(exc)
    ):
        raise exc
    settings = _settings(request.app)
    log.warning("api.database_unavailable", reason=readiness.explain(exc, settings.database_url))
    return JSONResponse(
        {"detail": readiness.explain(exc, "", public=True)},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def _settings(app: FastAPI) -> Settings:
    """The app's settings, as its routes get them (tests override them)."""
    return app.dependency_overrides.get(app_settings, app_settings)()


class StartupCheck:
    """ASGI middleware: the lifespan's start-up waits for the checks, and a problem is the
    one-line `lifespan.startup.failed` message (uvicorn logs it and exits; an exception in
    the lifespan would print a traceback instead)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        first = await receive()
        found = None
        if first["type"] == "lifespan.startup":
            found = await run_in_threadpool(_startup_problem, scope["app"])
        if found is not None:
            await send(
                {"type": "lifespan.startup.failed", "message": f"refusing to start: {found}"}
            )
            return
        pending = [first]

        async def replay() -> dict:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)


def _startup_problem(app: FastAPI) -> str | None:
    try:
        return problem(_settings(app), public=False)
    except ConfigurationError as exc:
        return f"configuration error: {exc}"


def install(app: FastAPI) -> None:
    """The probes, the start-up check and the 503, on `app`."""
    app.add_middleware(StartupCheck)
    app.include_router(router)
    for error in (OperationalError, ProgrammingError):
        app.add_exception_handler(error, database_unavailable)
