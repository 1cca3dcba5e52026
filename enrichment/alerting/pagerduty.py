"""PagerDuty Events API v2: the event for an alert, and its delivery.

One alert is one PagerDuty alert, keyed by `dedup_key`: the alert's stable id
(`enrichment/<tenant>/<metric>/<severity>`, the `alerts` row's unique key). A firing alert
sends `trigger` (its repeat after ENRICHMENT_ALERT_REPEAT_INTERVAL_S lands on the same open
PagerDuty alert); its resolve sends `resolve` with the same key, which closes it. After a
resolve, a new trigger with that key opens a new PagerDuty alert, as a new episode should.

Delivery (PagerDuty's "Response Codes & Retry Logic"): 202 is accepted; 400 is an invalid
event and is not retried; 429 and 5xx are retried with backoff (push.py), and what is still
failing is sent again at the next evaluation. The routing key travels in the body only, and
is scrubbed from every error text: it never reaches a log or an exception.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog

from enrichment.alerting import push
from enrichment.alerting.alerts import RUNBOOK, Notification
from enrichment.core.settings_sections import PagerDutyConfig
from enrichment.core.tenant_settings import TenantSettings

log = structlog.get_logger(__name__)

CLIENT = "enrichment fleet"
SUMMARY_MAX = 1024  # PagerDuty's limit for payload.summary
# Our severities are PagerDuty's own names (it also has "error" and "info").
SEVERITY = {"critical": "critical", "warning": "warning"}


def routing_key_for(tenant_settings: dict[str, Any], config: PagerDutyConfig) -> str | None:
    """The tenant's own integration key, else the global one, else None."""
    return TenantSettings.parse(tenant_settings).pagerduty_routing_key or config.routing_key


def dedup_key(note: Notification) -> str:
    """The alert's stable id: the same for its trigger, repeats and resolve."""
    return f"enrichment/{note.tenant}/{note.metric}/{note.severity}"


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "no data"
    return f"{value:,.0f}{unit}" if float(value).is_integer() else f"{value:,.1f}{unit}"


def summary(note: Notification) -> str:
    """What the page says: tenant, severity, metric, value against its threshold."""
    text = (
        f"[enrichment] {note.tenant}: {note.severity.upper()} {note.metric} "
        f"{_fmt(note.value, note.unit)} (threshold {_fmt(note.threshold, note.unit)})"
    )
    return text[:SUMMARY_MAX]


def _details(note: Notification, report_url: str | None) -> dict[str, Any]:
    details = {
        "tenant": note.tenant,
        "metric": note.metric,
        "rule": f"{note.metric}_{note.severity}",
        "value": note.value,
        "threshold": note.threshold,
        "unit": note.unit.strip(),
        "since": note.since.isoformat() if note.since else None,
        "what_to_do": RUNBOOK.get(note.metric, "").format(tenant=note.tenant),
    }
    if report_url:
        details["report"] = report_url
    return details


def event(
    note: Notification, routing_key: str, *, now: datetime, report_url: str | None = None
) -> dict[str, Any]:
    """The Events API v2 body: `trigger` with the PD-CEF payload for a firing alert,
    `resolve` (routing key, action and dedup key, as PagerDuty documents it) for a resolved
    one."""
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "resolve" if note.kind == "resolved" else "trigger",
        "dedup_key": dedup_key(note),
    }
    if note.kind == "resolved":
        return body
    body["payload"] = {
        "summary": summary(note),
        "source": f"enrichment/{note.tenant}",
        "severity": SEVERITY.get(note.severity, "error"),
        "timestamp": (note.since or now).isoformat(),
        "component": note.metric,
        "group": note.tenant,
        "class": f"{note.metric}_{note.severity}",
        "custom_details": _details(note, report_url),
    }
    body["client"] = CLIENT
    if report_url:
        body["client_url"] = report_url
        body["links"] = [{"href": report_url, "text": "Enrichment report"}]
    return body


def describe_error(body: str) -> str:
    """PagerDuty's error answer ({"status", "message", "errors": [...]}) as one line."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()
    if not isinstance(data, dict):
        return body.strip()
    errors = data.get("errors") if isinstance(data.get("errors"), list) else []
    parts = [str(data.get("message") or data.get("status") or ""), *map(str, errors)]
    return ": ".join(p for p in parts if p)


def send(
    body: dict[str, Any],
    config: PagerDutyConfig,
    *,
    allow_private: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> str | None:
    """POST one event through the guarded sender; return the dedup_key PagerDuty answered
    with. Raises push.PushRejected (400 and other 4xx, a redirect, a refused URL) or
    push.PushUnavailable (429/5xx/no answer, after the retries). `allow_private`:
    ENRICHMENT_WEBHOOK_ALLOW_PRIVATE (tests' local receivers)."""
    channel = push.Channel("pagerduty", "pagerduty", describe_error, (body["routing_key"],))
    answer = push.post_json(
        config.url, body, config, channel, allow_private=allow_private, sleep=sleep
    )
    key = _answered_key(answer)
    log.info("pagerduty.sent", action=body["event_action"], dedup_key=body["dedup_key"])
    return key


def _answered_key(answer: bytes) -> str | None:
    try:
        data = json.loads(answer or b"{}")
    except ValueError:
        return None
    return data.get("dedup_key") if isinstance(data, dict) else None
