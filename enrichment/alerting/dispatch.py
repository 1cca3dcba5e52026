"""Evaluate alerts for fresh snapshots and deliver their notifications on their routes.

Order per tenant: evaluate and store the new alert state (one transaction, committed), send
to each channel of the route (`routing`: PagerDuty first, then Slack) outside any transaction
(no row lock is held across a network call), then record the delivery (second transaction).
If the process dies between the two, the alert still reads "not notified" and the next
evaluation sends it again: at least once, never silently lost. A notification stays owed
until every channel of its route delivered it or failed for good; one channel's transient
failure sends it again on all of them at the next evaluation (PagerDuty folds a repeated
trigger into its open alert by dedup_key; Slack shows it twice).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import structlog
from sqlalchemy.orm import Session, sessionmaker

from enrichment.alerting import alert_store, alerts, pagerduty, push, routing, slack
from enrichment.alerting.routing import PAGERDUTY, SLACK, Sent
from enrichment.core.models import Tenant, utcnow
from enrichment.core.settings import Settings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Delivery:
    """What happened to one tenant's notifications: error None means delivered everywhere.
    sent: each channel's part."""

    tenant: str
    notifications: list[alerts.Notification]
    error: str | None
    sent: list[Sent] = field(default_factory=list)


def report_url(tenant: str, settings: Settings) -> str | None:
    """Link to the HTML report, when ENRICHMENT_PUBLIC_BASE_URL (e.g. https://enr.example)
    is set."""
    base = settings.public_base_url
    return f"{base}/api/enrichment/report/{tenant}.html" if base else None


def _no_receiver(channel: str, notes: list[alerts.Notification], what: str) -> list[Sent]:
    log.warning("alert.no_receiver", channel=channel, tenant=notes[0].tenant, count=len(notes))
    return [Sent(channel, tuple(notes), f"no {what} configured", True, unconfigured=True)]


def to_slack(notes: list[alerts.Notification], tenant_settings: dict, settings: Settings):
    """One message for the tenant's Slack share."""
    url = slack.webhook_for(tenant_settings, settings.slack)
    if url is None:
        return _no_receiver(SLACK, notes, "Slack webhook")
    message = slack.build_message(notes, report_url=report_url(notes[0].tenant, settings))
    private = settings.webhooks.allow_private  # the tests' local receivers
    try:
        slack.post(url, message, settings.slack, allow_private=private)
    except push.PushError as exc:
        return [Sent(SLACK, tuple(notes), str(exc), isinstance(exc, push.PushRejected))]
    return [Sent(SLACK, tuple(notes), None, True)]


def to_pagerduty(notes: list[alerts.Notification], tenant_settings: dict, settings: Settings):
    """One Events API v2 event per notification (each its own dedup_key)."""
    config = settings.routing.pagerduty
    key = pagerduty.routing_key_for(tenant_settings, config)
    if key is None:
        return _no_receiver(PAGERDUTY, notes, "PagerDuty routing key")
    return [_page(n, key, settings) for n in notes]


def _page(note: alerts.Notification, key: str, settings: Settings) -> Sent:
    url = report_url(note.tenant, settings)
    body = pagerduty.event(note, key, now=utcnow(), report_url=url)
    private = settings.webhooks.allow_private  # the tests' local receivers
    try:
        pagerduty.send(body, settings.routing.pagerduty, allow_private=private)
    except push.PushError as exc:
        return Sent(PAGERDUTY, (note,), str(exc), isinstance(exc, push.PushRejected))
    return Sent(PAGERDUTY, (note,), None, True)


SENDERS = {PAGERDUTY: to_pagerduty, SLACK: to_slack}


def deliver(notes: list[alerts.Notification], tenant_settings: dict, settings: Settings):
    """Send one tenant's notifications on their routes; each channel's part."""
    routes = routing.routes_for(tenant_settings)
    sent: list[Sent] = []
    for channel, share in routing.split(notes, routes).items():
        sent.extend(SENDERS[channel](share, tenant_settings, settings))
    return sent


def _evaluate(factory: sessionmaker[Session], snap, settings: Settings, now: datetime):
    with factory.begin() as session:
        # Locked: two monitor runs (two beats) take turns instead of inserting the same alert.
        # FOR NO KEY UPDATE: a new record of the tenant (FOR KEY SHARE) does not wait.
        tenant = session.get(Tenant, snap.tenant_id, with_for_update={"key_share": True})
        notes = alert_store.evaluate_tenant(
            session, snap, tenant.settings or {}, settings.alerts, now=now,
            fleet_error_rate=settings.reviews.max_auto_error_rate,
        )  # fmt: skip
        return notes, dict(tenant.settings or {})


def _record(factory, tenant_id: int, notes, sent: list[Sent], now: datetime) -> str | None:
    """Record each notification's outcome; the tenant's errors, joined (None: all sent)."""
    by_outcome: dict[tuple[str | None, bool], list[alerts.Notification]] = {}
    for note in notes:
        by_outcome.setdefault(routing.outcome(note, sent), []).append(note)
    with factory.begin() as session:
        for (error, final), group in by_outcome.items():
            alert_store.record_delivery(
                session, tenant_id, group, error=error, final=final, now=now
            )
    return "; ".join(e for e, _ in by_outcome if e) or None


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
        notes, tenant_settings = _evaluate(factory, snap, settings, now)
        if not notes:
            continue
        sent = deliver(notes, tenant_settings, settings)
        error = _record(factory, snap.tenant_id, notes, sent, now)
        channels = sorted({s.channel for s in sent})
        log.info("alert.notified", tenant=snap.tenant, count=len(notes), channels=channels,
                 error=error)  # fmt: skip
        out.append(Delivery(snap.tenant, notes, error, sent))
    return out
