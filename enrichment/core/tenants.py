"""Tenants and their API keys (stored as SHA-256 hashes, shown once at creation)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from enrichment.core.models import Tenant
from enrichment.core.settings import get_settings

TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def validate_name(name: str) -> str:
    if not TENANT_NAME.match(name):
        raise ValueError(
            f"bad tenant name {name!r}: use 1-63 lowercase letters, digits and '-', "
            "starting with a letter or digit"
        )
    return name


def create_tenant(
    session: Session, name: str, *, confidence_threshold: float | None = None
) -> tuple[Tenant, str]:
    """Create a tenant and return it with its new API key (the only time the key is seen).

    confidence_threshold defaults to the setting ENRICHMENT_CONFIDENCE_THRESHOLD."""
    if confidence_threshold is None:
        confidence_threshold = get_settings().confidence_threshold
    tenant = Tenant(
        name=validate_name(name), confidence_threshold=confidence_threshold, settings={}
    )
    api_key = rotate_key(tenant)
    session.add(tenant)
    session.flush()
    return tenant, api_key


def rotate_key(tenant: Tenant) -> str:
    """Give the tenant a new API key and return it: the only time it is seen. The old key
    stops working when the change commits (only the hash is stored)."""
    api_key = f"enr_{secrets.token_urlsafe(24)}"
    tenant.api_key_hash = hash_key(api_key)
    return api_key


class UnknownTenant(LookupError):
    """No tenant by that name; the message says so in one line."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown tenant {name!r}")
        self.name = name


def by_name(session: Session, name: str) -> Tenant | None:
    """The one tenant lookup by name (names are unique)."""
    return session.scalar(select(Tenant).where(Tenant.name == name))


def require(session: Session, name: str) -> Tenant:
    """The tenant called `name`, or UnknownTenant."""
    tenant = by_name(session, name)
    if tenant is None:
        raise UnknownTenant(name)
    return tenant


def get_or_create(
    session: Session, name: str, *, confidence_threshold: float | None = None
) -> Tenant:
    tenant = by_name(session, name)
    return tenant or create_tenant(session, name, confidence_threshold=confidence_threshold)[0]


def key_matches(tenant: Tenant, api_key: str) -> bool:
    return tenant.api_key_hash is not None and hmac.compare_digest(
        tenant.api_key_hash, hash_key(api_key)
    )
