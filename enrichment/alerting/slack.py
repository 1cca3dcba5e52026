"""Slack incoming webhooks: the message and its delivery.

Delivery rules (Slack's webhook docs; the POST and its retries are `push`, shared with
PagerDuty): success is 200 with body "ok"; errors are an HTTP status plus a plain-text error
string ("invalid_payload", "channel_not_found", ...), which we log. 429 carries Retry-After
(seconds) and is retried after that wait; 5xx and connection errors are retried with
exponential backoff and jitter; 4xx is never retried, because repeating a rejected payload
can get the app disabled.

The webhook URL is a secret (anyone holding it can post): it never goes into a log line or
an exception message, and library exceptions that might carry it are not chained. It is
checked like a tenant webhook's (core/outbound.py): at start-up, when a tenant's is written,
and before every POST, which connects to the address checked and follows no redirect.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog

from enrichment.alerting import push
from enrichment.alerting.alerts import RUNBOOK, Notification
from enrichment.core.settings import SlackConfig
from enrichment.core.tenant_settings import TenantSettings

log = structlog.get_logger(__name__)

# Slack's block limits: section text 3000 characters, 50 blocks per message.
MAX_SECTION_CHARS = 3000
MAX_BLOCKS = 50
EMOJI = {"critical": ":red_circle:", "warning": ":large_orange_circle:"}
CHANNEL = push.Channel("slack webhook", "slack")


# The delivery errors (push.py), by the names Slack callers know: SlackError has `status`
# (0: no answer) and `error` (Slack's error string), and holds no URL.
SlackError = push.PushError
SlackRejected = push.PushRejected  # 4xx (or a bad URL): retrying cannot help
SlackUnavailable = push.PushUnavailable  # 429, 5xx or no answer, after the retries


def webhook_for(tenant_settings: dict[str, Any], config: SlackConfig) -> str | None:
    """The tenant's own webhook, else the global one, else None."""
    return TenantSettings.parse(tenant_settings).slack_webhook_url or config.webhook_url


def _fmt(value: float | None, unit: str) -> str:
    return "no data" if value is None else f"{value:.1f}{unit}"


def _section(note: Notification) -> dict[str, Any]:
    head = "RESOLVED" if note.kind == "resolved" else note.severity.upper()
    cmp = "back within" if note.kind == "resolved" else "breached"
    todo = RUNBOOK[note.metric].format(tenant=note.tenant)
    lines = [
        f"{EMOJI.get(note.severity, '')} *{head}* `{note.metric}` for *{note.tenant}*",
        f"*Value:* {_fmt(note.value, note.unit)}  *Threshold ({cmp}):* "
        f"{_fmt(note.threshold, note.unit)}",
    ]
    if note.since is not None:
        lines.append(f"*Since:* {note.since:%Y-%m-%d %H:%M} UTC")
    if note.kind == "firing":
        lines.append(f"*What to do:* {todo}")
    text = "\n".join(lines)[:MAX_SECTION_CHARS]
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def summary(notes: list[Notification]) -> str:
    """The notification/fallback `text`: what a phone's lock screen shows."""
    parts = [
        f"{'RESOLVED' if n.kind == 'resolved' else n.severity.upper()} {n.metric}="
        f"{_fmt(n.value, n.unit)}"
        for n in notes
    ]
    return f"[enrichment] {notes[0].tenant}: " + ", ".join(parts)


def build_message(notes: list[Notification], *, report_url: str | None = None) -> dict[str, Any]:
    """One message for one tenant's notifications: `text` plus `blocks` (severity, metric,
    value, threshold, what to do), and a link to the HTML report when its URL is known."""
    blocks: list[dict[str, Any]] = [_section(n) for n in notes][: MAX_BLOCKS - 1]
    if report_url:
        link = f"<{report_url}|Open the enrichment report>"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": link}]})
    return {"text": summary(notes), "blocks": blocks}


def post(
    url: str,
    payload: dict[str, Any],
    config: SlackConfig,
    *,
    allow_private: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """POST one message through the guarded sender; raise SlackRejected (4xx, a redirect or
    a refused URL: not retried) or SlackUnavailable (after the retries ran out). Logs
    Slack's error string, never the URL. `allow_private`: ENRICHMENT_WEBHOOK_ALLOW_PRIVATE."""
    push.post_json(url, payload, config, CHANNEL, allow_private=allow_private, sleep=sleep)
    log.info("slack.sent", blocks=len(payload.get("blocks", [])))
