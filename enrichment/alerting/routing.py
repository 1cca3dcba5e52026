"""Severity routing: the one table of which channels each alert severity goes to.

    critical -> pagerduty, slack    (page the on-call engineer; the team sees it too)
    warning  -> slack               (and the monitor watches the tenant faster: `cadence`)
    info     -> nothing             (notices: the report page and the health route, `notices`)

Per tenant, tenants.settings["alert_routes"] replaces the channels of the severities it
names, e.g. {"critical": ["slack"]} (no paging for this tenant) or {"warning": ["slack",
"pagerduty"]}; [] sends nothing. INFO is never pushed, whatever a tenant says. A value that
is not valid (an unknown severity or channel, not a list) is ignored and logged, and the
default stands.

Each firing or resolved notification goes to every channel of its severity's route that
has a receiver (a channel without one is skipped, with a warning in the log; a route with
none records "no ... configured" on the alert, as nothing was sent). A
`muted` resolve (the alert was silenced after it was sent) goes only to the channels that
keep an incident open (PagerDuty), so that page closes; chat channels stay quiet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog

from enrichment.alerting.alerts import CRITICAL, INFO, WARNING, Notification

log = structlog.get_logger(__name__)

PAGERDUTY, SLACK = "pagerduty", "slack"
CHANNELS = (PAGERDUTY, SLACK)  # the order of delivery: the page first
# Channels that hold an open incident until they are told it resolved.
STATEFUL = frozenset({PAGERDUTY})
ROUTES: dict[str, tuple[str, ...]] = {
    CRITICAL: (PAGERDUTY, SLACK),
    WARNING: (SLACK,),
    INFO: (),
}


@dataclass(frozen=True)
class Sent:
    """One channel's delivery of some of a tenant's notifications: error None means
    delivered; final means not worth sending again (delivered, rejected or no receiver).
    unconfigured: the deployment has no receiver for the channel (no webhook, no key)."""

    channel: str
    notes: tuple[Notification, ...]
    error: str | None
    final: bool
    unconfigured: bool = False


def routes_for(tenant_settings: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """ROUTES with the tenant's valid overrides (see the module docstring)."""
    own = tenant_settings.get("alert_routes")
    routes = dict(ROUTES)
    if own is None:
        return routes
    if not isinstance(own, dict):
        log.warning("routing.bad_override", reason="alert_routes is not an object")
        return routes
    for severity, channels in own.items():
        valid = _channels(severity, channels)
        if valid is not None:
            routes[severity] = valid
    return routes


def _channels(severity: object, channels: object) -> tuple[str, ...] | None:
    """The override's channels, or None (logged) when it cannot apply."""
    if severity not in (CRITICAL, WARNING):
        why = "only critical and warning can be routed; info is never pushed"
        log.warning("routing.bad_override", severity=str(severity)[:32], reason=why)
        return None
    if not isinstance(channels, list) or not all(c in CHANNELS for c in channels):
        why = f"channels must be a list of {', '.join(CHANNELS)}"
        log.warning("routing.bad_override", severity=severity, reason=why)
        return None
    return tuple(dict.fromkeys(channels))


def split(
    notes: list[Notification], routes: dict[str, tuple[str, ...]]
) -> dict[str, list[Notification]]:
    """Each channel's share of one tenant's notifications, channels in delivery order."""
    out: dict[str, list[Notification]] = {}
    for note in notes:
        for channel in routes.get(note.severity, ()):
            if note.muted and channel not in STATEFUL:
                continue
            out.setdefault(channel, []).append(note)
    return {c: out[c] for c in CHANNELS if c in out}


def outcome(note: Notification, sent: list[Sent]) -> tuple[str | None, bool]:
    """One notification's (error, final) over the channels of its route. A channel with no
    receiver configured is left out (it was logged), unless no channel of the route has one:
    then that is the error, as nothing was sent. Delivered when every remaining channel
    delivered; final when none failed in a way worth retrying. A note no channel carried
    (its route is empty) counts as delivered."""
    mine = [s for s in sent if note in s.notes]
    mine = [s for s in mine if not s.unconfigured] or mine
    errors = [s.error for s in mine if s.error is not None]
    return ("; ".join(errors) or None), all(s.final for s in mine if s.error is not None)
