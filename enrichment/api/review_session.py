"""The review page's sessions and rendering: what every page request goes through (its security
headers and CSP nonce come from `guards.Guard`, as every answer's do).

Sessions live in the database (core/review_sessions.py): the cookie (one per tenant, signed
with itsdangerous: ENRICHMENT_REVIEW_SECRET, or a random secret per process; HttpOnly,
SameSite=Strict, Secure over https, path /review/<tenant>) carries a random token whose
SHA-256 is the session's row. Logout ends the row, so a copied cookie stops at once; so do
the idle timeout (ENRICHMENT_REVIEW_IDLE_S), the absolute limit (ENRICHMENT_REVIEW_SESSION_S,
checked here, not only by the cookie's Max-Age) and revoking the reviewer (core/reviewers.py).
A reviewer's key is never stored (only its hash), logged or shown.

Every form carries the session's CSRF token (the sign-in form too: a visit starts as an
anonymous cookie, with no row, on the sign-in page; once signed in, the token is derived from
the session's); a POST without it, or with another, gets 403.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Annotated, Any, NamedTuple

import structlog
from fastapi import Depends, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from enrichment.api.deps import AppSettings, DbSession, TenantName, same_secret
from enrichment.core import audit, review_sessions, tenants
from enrichment.core.models import Tenant, utcnow
from enrichment.core.settings import Settings
from enrichment.reporting import pages

log = structlog.get_logger(__name__)

COOKIE = "review_session"
_SALT = "enrichment.review-page.session"
CSRF_FAILED = "This form has expired or did not come from this page: reload it and try again."
# Without ENRICHMENT_REVIEW_SECRET, sign-ins end with the process (see ReviewConfig).
_PROCESS_SECRET = secrets.token_urlsafe(32)

TEMPLATES = Jinja2Templates(env=pages.environment())


@dataclass(frozen=True)
class Visit:
    """What the session cookie holds. `since`: epoch seconds of sign-in (or of the sign-in
    page, for an anonymous visit); `token`: the server-side session's (None: anonymous);
    `flash`: the one-line confirmation the queue shows next."""

    tenant: str
    csrf: str
    since: float
    token: str | None = None
    flash: str | None = None


class Reviewer(NamedTuple):
    tenant: Tenant
    visit: Visit
    name: str

    @property
    def actor(self) -> str:
        return audit.reviewer_actor(self.name)


def signer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.reviews.secret or _PROCESS_SECRET, salt=_SALT)


def anonymous(tenant: str) -> Visit:
    return Visit(tenant=tenant, csrf=secrets.token_urlsafe(32), since=time.time())


def signed_in(tenant: str, token: str) -> Visit:
    """A signed-in visit; its CSRF token is derived from the session's token."""
    csrf = hashlib.sha256(f"review-csrf:{token}".encode()).hexdigest()
    return Visit(tenant=tenant, csrf=csrf, since=time.time(), token=token)


def _load(request: Request, tenant: str, settings: Settings) -> Visit | None:
    """The cookie's visit if its signature holds, it is this tenant's and it has not expired."""
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        visit = Visit(**signer(settings).loads(raw, max_age=settings.reviews.session_s))
    except (BadData, TypeError):
        return None
    expired = time.time() - visit.since > settings.reviews.session_s
    return None if expired or visit.tenant != tenant else visit


def _reviewer(s: Session, visit: Visit | None, settings: Settings) -> Reviewer | None:
    """The visit's reviewer, while its session lives (not ended, idle or too old, and its
    reviewer not revoked). Commits when it moves the session's last_seen_at on."""
    if visit is None or visit.token is None:
        return None
    row = tenants.by_name(s, visit.tenant)
    if row is None or row.disabled_at is not None:  # a disabled tenant's sessions end
        return None
    limits = settings.reviews
    live = review_sessions.find(s, row.id, visit.token, now=utcnow(), limits=limits)
    if live is None:
        return None
    name = live.reviewer
    s.commit()  # ends the lookup's transaction (and writes last_seen_at when it moved on)
    return Reviewer(row, visit, name)


@dataclass(frozen=True)
class Page:
    """One request to a tenant's review page: the cookie's visit (this tenant's, unexpired),
    its reviewer when signed in with the current key, and how to answer."""

    request: Request
    tenant: str
    settings: Settings
    visit: Visit | None
    who: Reviewer | None

    @property
    def base(self) -> str:
        return self.request.scope.get("root_path", "").rstrip("/") + f"/review/{self.tenant}"

    def render(self, template: str, *, status_code: int = 200, **context: Any) -> Response:
        visit: Visit | None = context.pop("visit", self.visit)
        context.update(
            nonce=self.request.state.csp_nonce,  # the one guards.Guard puts in the CSP
            tenant=self.tenant,
            base=self.base,
            csrf=visit.csrf if visit else "",
            reviewer=self.who.name if self.who else None,
        )
        return TEMPLATES.TemplateResponse(self.request, template, context, status_code=status_code)

    def redirect(self, path: str = "") -> Response:
        return RedirectResponse(self.base + path, status_code=303)

    def problem(self, message: str, status_code: int = 404) -> Response:
        return self.render("problem.html", message=message, status_code=status_code)

    def keep(self, response: Response, visit: Visit) -> Response:
        """`response` with `visit` as the session cookie, for what is left of the session."""
        left_s = self.settings.reviews.session_s - (time.time() - visit.since)
        response.set_cookie(
            COOKIE,
            signer(self.settings).dumps(asdict(visit)),
            max_age=max(1, int(left_s)),
            path=self.base,
            secure=self.request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        return response

    def csrf_ok(self, token: str) -> bool:
        return self.visit is not None and bool(token) and same_secret(self.visit.csrf, token)

    def log(self, event: str, **fields: Any) -> None:
        """A log line with the tenant and the reviewer (never the key: it is not kept)."""
        reviewer = self.who.name if self.who else None
        log.info(event, tenant=self.tenant, reviewer=reviewer, **fields)

    def gate(self, token: str) -> Reviewer | Response:
        """A POST's reviewer; else 403 for a missing or wrong token, or the sign-in page."""
        if not self.csrf_ok(token):
            return self.problem(CSRF_FAILED, 403)
        return self.who or self.redirect("/login")


def _page(request: Request, tenant: TenantName, s: DbSession, settings: AppSettings) -> Page:
    visit = _load(request, tenant, settings)
    return Page(request, tenant, settings, visit, _reviewer(s, visit, settings))


ReviewPage = Annotated[Page, Depends(_page)]
