"""What every request goes through before its route: a request id, the body limit and the
security headers; and the one answer to an unexpected error.

One pure ASGI middleware (no BaseHTTPMiddleware, which would hide the body as it arrives):
- **Request id.** A fresh `X-Request-ID` on every answer, bound into the log context of
  everything the request logs, so an answer's id finds its log lines.
- **Body limit**, before routing, authentication and parsing: a declared Content-Length over
  the route's limit is refused with 413 at once, nothing read; a chunked body is counted as it
  arrives and refused past the limit without reading the rest. Either way the connection is
  closed, so the server does not read (and discard) the rest. The limits are `body_limit`'s.
- **Security headers** on every answer: one CSP (no script, but the review page's with this
  response's nonce; styles only with the nonce, which templates read as
  `request.state.csp_nonce`), no framing, nosniff, and
  `Cache-Control: no-store`: tenant data stays out of shared caches and the back button.
- **Unexpected errors** are a 500 whose one line names the request id; the exception (and any
  database text in it) goes to the log only.
"""

from __future__ import annotations

import json
import math
import re
import secrets
from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from fastapi.routing import APIRoute
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from enrichment.ingestion import items as records_in

log = structlog.get_logger(__name__)

REQUEST_ID = "X-Request-ID"
# Every body but a records batch is a few fields and a note of 2,000 characters at most.
SMALL_BODY_BYTES = 64 * 1024
RECORDS_POST = re.compile(r"/api/enrichment/records/[^/]+")
# Swagger UI runs its own script and inline styles; the docs carry no tenant data.
DOCS = ("/docs", "/docs-assets/")
REVIEW = "/review/"
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def body_limit(method: str, path: str) -> int:
    """The most bytes a request's body may have: a records batch MAX_BODY_BYTES, else small."""
    if method == "POST" and RECORDS_POST.fullmatch(path):
        return records_in.MAX_BODY_BYTES
    return SMALL_BODY_BYTES


def csp(path: str, nonce: str) -> str:
    if path.startswith(DOCS):
        return DOCS_CSP
    # The review page's one script (keyboard shortcuts, the label's actions) carries the
    # nonce; the page works without it. Anywhere else, no script at all.
    script = f"'nonce-{nonce}'" if path.startswith(REVIEW) else "'none'"
    return (
        f"default-src 'self'; script-src {script}; style-src 'nonce-{nonce}'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )


def secure(headers: MutableHeaders, path: str, nonce: str, request_id: str) -> None:
    """The headers every answer carries (the route's own CSP, if any, gives way to this one)."""
    headers["Content-Security-Policy"] = csp(path, nonce)
    headers["X-Frame-Options"] = "DENY"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "same-origin"
    if not path.startswith(DOCS):
        headers["Cache-Control"] = "no-store"
    headers[REQUEST_ID] = request_id


class BodyTooLarge(HTTPException):
    """Raised from `receive` past the limit: FastAPI re-raises an HTTPException met while
    reading a body, so the route's exception handling answers it as a 413 problem."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"body is over the {limit} byte limit")


def _route_path(scope: Scope) -> str:
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _declared_length(scope: Scope) -> int | None:
    declared = Headers(scope=scope).get("content-length", "")
    return int(declared) if declared.isdigit() else None


def _problem(status: int, detail: str) -> tuple[Message, Message]:
    body = json.dumps({"detail": detail}).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))],
    }
    return start, {"type": "http.response.body", "body": body}


class Guard:
    """The middleware: `app.add_middleware(Guard)`; see the module's docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(8)
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            await _Exchange(scope, receive, send, request_id).run(self.app)


class _Exchange:
    """One request through the guard: counts its body, stamps its answer's headers."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        self.scope, self._receive, self._send = scope, receive, send
        self.request_id = request_id
        self.path = _route_path(scope)
        self.limit = body_limit(scope["method"], self.path)
        self.nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["csp_nonce"] = self.nonce
        self.read = 0
        self.over = False
        self.started = False

    async def run(self, app: ASGIApp) -> None:
        declared = _declared_length(self.scope)
        if declared is not None and declared > self.limit:
            self.over = True
            await self.answer(413, f"body is {declared} bytes; the limit is {self.limit}")
            return
        try:
            await app(self.scope, self.receive, self.send)
        except BodyTooLarge as exc:
            if not self.started:
                await self.answer(413, exc.detail)
        except Exception:
            log.exception(
                "api.error",
                request_id=self.request_id,
                method=self.scope["method"],
                path=self.path,
            )
            if self.started:
                raise
            await self.answer(500, f"internal error: the server log has it as {self.request_id}")

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self.read += len(message.get("body", b""))
            if self.read > self.limit:
                self.over = True
                raise BodyTooLarge(self.limit)
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            message.setdefault("headers", [])
            headers = MutableHeaders(scope=message)
            secure(headers, self.path, self.nonce, self.request_id)
            if self.over:  # else the server would read the rest of the body to keep the link
                headers["Connection"] = "close"
        await self._send(message)

    async def answer(self, status: int, detail: str) -> None:
        start, body = _problem(status, detail)
        await self.send(start)
        await self._send(body)


def unrepresentable(value: Any) -> float | None:
    """The first NaN or infinite number in a parsed JSON value (`1e999` parses as inf), or
    None. Iterative: a deeply nested body cannot exhaust the stack."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, float) and not math.isfinite(item):
            return item
    return None


def check_finite(value: Any) -> None:
    """422 with one line if `value` holds a number JSON cannot carry."""
    if (bad := unrepresentable(value)) is not None:
        raise HTTPException(
            422,
            f"the body has a number JSON cannot carry ({bad}): NaN, Infinity and numbers "
            "beyond ±1.8e308 are refused",
        )


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            check_finite(await super().json())
        return self._json


class StrictJsonRoute(APIRoute):
    """A route whose JSON body is refused with 422 when it holds NaN or an infinity (else
    FastAPI's own 422 would echo the number back and fail to encode it: a 500)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict
