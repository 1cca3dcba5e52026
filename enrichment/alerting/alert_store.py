"""The alerts' state in the database: load it, run the pure decisions of `alerts` on it,
store it, and record what was delivered. Every query is scoped by the tenant."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from enrichment.alerting.alerts import (
    AlertState,
    Notification,
    after_delivery,
    evaluate,
    plan,
    rules_for,
)
from enrichment.core.monitor_models import Alert, AlertSilence
from enrichment.core.settings import AlertPolicy

log = structlog.get_logger(__name__)

_STATE_FIELDS = (
    "state",
    "consecutive",
    "value",
    "threshold",
    "active_since",
    "fired_at",
    "last_notified_at",
    "resolved_at",
)


def _to_state(row: Alert) -> AlertState:
    return AlertState(row.metric, row.severity, **{f: getattr(row, f) for f in _STATE_FIELDS})


def load_alerts(session: Session, tenant_id: int) -> dict[tuple[str, str], Alert]:
    """The tenant's alert rows, locked: two monitors never interleave one tenant's state."""
    rows = session.scalars(
        select(Alert).where(Alert.tenant_id == tenant_id).with_for_update()
    ).all()
    return {(r.metric, r.severity): r for r in rows}


def active_silences(session: Session, tenant_id: int, now: datetime) -> set[str | None]:
    rows = session.scalars(
        select(AlertSilence.metric).where(
            AlertSilence.tenant_id == tenant_id,
            AlertSilence.starts_at <= now,
            AlertSilence.ends_at > now,
        )
    ).all()
    return set(rows)


def store(
    session: Session,
    tenant_id: int,
    rows: dict[tuple[str, str], Alert],
    states: dict[tuple[str, str], AlertState],
) -> dict[tuple[str, str], Alert]:
    """Write pure states back to their rows (creating rows for new keys); flushed."""
    for key, st in states.items():
        row = rows.get(key)
        if row is None:
            row = rows[key] = Alert(tenant_id=tenant_id, metric=key[0], severity=key[1])
            session.add(row)
        for f in _STATE_FIELDS:
            setattr(row, f, getattr(st, f))
    session.flush()
    return rows


def evaluate_tenant(
    session: Session,
    snapshot: Any,
    tenant_settings: dict[str, Any],
    policy: AlertPolicy,
    *,
    now: datetime,
    fleet_error_rate: float | None = None,
) -> list[Notification]:
    """Advance and store one tenant's alerts for a snapshot; return what to send (not sent).
    `fleet_error_rate`: ENRICHMENT_MAX_AUTO_ERROR_RATE, for a tenant without its own."""
    rules = rules_for(tenant_settings, fleet_error_rate)
    rows = load_alerts(session, snapshot.tenant_id)
    states = evaluate({k: _to_state(r) for k, r in rows.items()}, snapshot, rules, policy, now=now)
    silences = active_silences(session, snapshot.tenant_id, now)
    states, notes = plan(snapshot.tenant, states, rules, policy, silences=silences, now=now)
    store(session, snapshot.tenant_id, rows, states)
    return notes


def record_delivery(
    session: Session,
    tenant_id: int,
    notes: list[Notification],
    *,
    error: str | None,
    final: bool,
    now: datetime,
) -> None:
    """After a send: delivered (or failed for good, `final`) moves the state on; a transient
    failure only records the error, so the next evaluation sends it again."""
    rows = load_alerts(session, tenant_id)
    for note in notes:
        row = rows.get((note.metric, note.severity))
        if row is None:
            continue
        row.last_error = error
        if error is None or final:
            st = after_delivery(_to_state(row), note.kind, now=now)
            for f in _STATE_FIELDS:
                setattr(row, f, getattr(st, f))
            row.notifications_sent += error is None


def firing(session: Session, tenant_id: int) -> list[Alert]:
    """The tenant's firing (and pending) alerts, for health views."""
    return list(
        session.scalars(
            select(Alert)
            .where(
                Alert.tenant_id == tenant_id, or_(Alert.state == "firing", Alert.state == "pending")
            )
            .order_by(Alert.severity, Alert.metric)
        )
    )
