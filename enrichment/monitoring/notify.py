"""Evaluate alerts for fresh snapshots and deliver their notifications.

Order per tenant: evaluate and store the new alert state (one transaction, committed), send
to Slack outside any transaction (no row lock is held across a network call), then record the
delivery (second transaction). If the process dies between the two, the alert still reads
"not notified" and the next evaluation sends it again: at least once, never silently lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy.orm import Session, sessionmaker

from enrichment.core.models import Tenant, utcnow
from enrichment.core.settings import Settings
from enrichment.monitoring import alert_store, alerts, slack

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Delivery:
    """What happened to one tenant's notifications: error None means delivered."""

    tenant: str
    notifications: list[alerts.Notification]
    error: str | None


def report_url(tenant: str, settings: Settings) -> str | None:
    """Link to the HTML report, when ENRICHMENT_PUBLIC_BASE_URL (e.g. https://enr.example)
    is set."""
    base = settings.public_base_url
    return f"{base}/api/enrichment/report/{tenant}.html" if base else None


def deliver(notes: list[alerts.Notification], url: str | None, settings: Settings):
    """Send one tenant's notifications as one message; (error, final) - error None if sent."""
    if url is None:
        log.warning("alert.no_receiver", tenant=notes[0].tenant, count=len(notes))
        return "no Slack webhook configured", True
    message = slack.build_message(notes, report_url=report_url(notes[0].tenant, settings))
    try:
        slack.post(url, message, settings.slack)
    except slack.SlackError as exc:
        return str(exc), isinstance(exc, slack.SlackRejected)
    return None, True


def _evaluate(factory: sessionmaker[Session], snap, policy, now: datetime):
    with factory.begin() as session:
        # Locked: two monitor runs (two beats) take turns instead of inserting the same alert.
        tenant = session.get(Tenant, snap.tenant_id, with_for_update=True)
        notes = alert_store.evaluate_tenant(session, snap, tenant.settings or {}, policy, now=now)
        return notes, dict(tenant.settings or {})


def run_alerts(
    factory: sessionmaker[Session],
    snapshots: list,
    settings: Settings,
    *,
    now: datetime | None = None,
) -> list[Delivery]:
    """Evaluate, send and record, tenant by tenant. Returns the attempted deliveries."""
    now = now or utcnow()
    out = []
    for snap in snapshots:
        notes, tenant_settings = _evaluate(factory, snap, settings.alerts, now)
        if not notes:
            continue
        url = slack.webhook_for(tenant_settings, settings.slack)
        error, final = deliver(notes, url, settings)
        with factory.begin() as session:
            alert_store.record_delivery(
                session, snap.tenant_id, notes, error=error, final=final, now=now
            )
        log.info("alert.notified", tenant=snap.tenant, count=len(notes), error=error)
        out.append(Delivery(snap.tenant, notes, error))
    return out
