"""Tenants managed without SQL: list them, show a tenant's effective settings, change them,
disable and enable one. The CLI (`enrichment tenant`) and the admin API (api/admin.py) are
thin calls into this module; every change is written with its audit row in the caller's
transaction (so the row exists exactly when the change does).

A change is checked as the whole config it makes (TenantSettings.validate) before anything
is written: a bad value or an unknown key is refused with its one-line reason
(TenantSettingsError) and nothing changes. `confidence_threshold` is a column of tenants,
not a key of its JSON settings, and is changed the same way. A value of None removes a key
(its default applies again). A good value takes effect at the next claim, which reads the
row again.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from enrichment.core import audit
from enrichment.core.models import Tenant, utcnow
from enrichment.core.monitor_models import MetricSnapshot
from enrichment.core.tenant_settings import SECRET_KEYS, TenantSettings, TenantSettingsError

THRESHOLD = "confidence_threshold"
MASK = "(secret)"


@dataclass(frozen=True)
class TenantLine:
    """One tenant in a listing; the counts are the monitor's last snapshot (None: none yet)."""

    name: str
    disabled_at: datetime | None
    records: int | None
    backlog: int | None


@dataclass(frozen=True)
class Effective:
    """One setting as it applies now: its value (secrets masked) and whether it is a default."""

    key: str
    value: Any
    default: bool


def listing(s: Session) -> list[TenantLine]:
    """Every tenant by name, with its last snapshot's counts (one indexed row each, never a
    count over the records)."""
    snap = MetricSnapshot

    def last(column):
        return (
            select(column)
            .where(snap.tenant_id == Tenant.id)
            .order_by(snap.taken_at.desc())
            .limit(1)
            .correlate(Tenant)
            .scalar_subquery()
        )

    q = select(
        Tenant.name, Tenant.disabled_at, last(snap.total_records), last(snap.backlog_records)
    ).order_by(Tenant.name)
    return [TenantLine(*row) for row in s.execute(q)]


def effective(tenant: Tenant) -> list[Effective]:
    """The tenant's threshold and every key of TenantSettings as it applies now: its stored
    value, or the default (a stored value the reader ignores shows as its default)."""
    own = TenantSettings.parse(tenant.settings)
    stored = tenant.settings or {}
    out = [Effective(THRESHOLD, tenant.confidence_threshold, False)]
    for f in fields(TenantSettings):
        value = getattr(own, f.name)
        is_default = stored.get(f.name) is None or value == getattr(TenantSettings(), f.name)
        out.append(Effective(f.name, _shown(f.name, _plain(value)), is_default))
    return out


def change(
    s: Session, tenant: Tenant, changes: dict[str, Any], *, actor: str, allow_private: bool
) -> dict[str, dict[str, Any]]:
    """Apply `changes` (key -> value; None removes the key) if the config they make is valid,
    with one SETTINGS_CHANGED audit row; returns what changed, key -> {"from", "to"} (secrets
    masked). Raises TenantSettingsError, nothing written, for a bad value or key."""
    threshold = _threshold(changes[THRESHOLD]) if THRESHOLD in changes else None
    config = dict(tenant.settings or {})
    for key, value in changes.items():
        if key == THRESHOLD:
            continue
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    TenantSettings.validate(config, allow_private=allow_private)
    diff = _diff(tenant, config, threshold)
    if threshold is not None:
        tenant.confidence_threshold = threshold
    tenant.settings = config
    if diff:
        audit.record(s, tenant.id, actor, audit.SETTINGS_CHANGED, tenant.name, **diff)
    return diff


def set_disabled(s: Session, tenant: Tenant, disabled: bool, *, actor: str) -> bool:
    """Disable (or enable) the tenant, with its audit row; False when it already was."""
    if (tenant.disabled_at is not None) == disabled:
        return False
    tenant.disabled_at = utcnow() if disabled else None
    action = audit.TENANT_DISABLED if disabled else audit.TENANT_ENABLED
    audit.record(s, tenant.id, actor, action, tenant.name)
    return True


def _threshold(raw: Any) -> float:
    number = isinstance(raw, int | float) and not isinstance(raw, bool)
    if not number or not 0.0 <= raw <= 1.0:  # NaN fails the comparison too
        got = repr(raw)[:40]
        raise TenantSettingsError(f"{THRESHOLD!r} must be a number in [0, 1], got {got}")
    return float(raw)


def _diff(tenant: Tenant, config: dict[str, Any], threshold: float | None) -> dict[str, Any]:
    """key -> {"from": old, "to": new} for each key whose stored value changes."""
    old = tenant.settings or {}
    diff = {
        key: {"from": _shown(key, old.get(key)), "to": _shown(key, config.get(key))}
        for key in sorted(set(old) | set(config))
        if old.get(key) != config.get(key)
    }
    if threshold is not None and threshold != tenant.confidence_threshold:
        diff[THRESHOLD] = {"from": tenant.confidence_threshold, "to": threshold}
    return diff


def _shown(key: str, value: Any) -> Any:
    """A value as it may be shown or audited: a secret's only as set or not."""
    return MASK if key in SECRET_KEYS and value is not None else value


def _plain(value: Any) -> Any:
    """A parsed value as JSON: mappings as objects, sets as sorted lists."""
    if isinstance(value, frozenset | set):
        return sorted(value)
    if hasattr(value, "items"):
        return dict(value)
    return value
