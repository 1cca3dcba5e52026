"""Slack incoming webhooks: the message and its delivery.

Delivery rules (Slack's webhook docs): success is 200 with body "ok"; errors are an HTTP
status plus a plain-text error string ("invalid_payload", "channel_not_found", ...), which we
log. 429 carries Retry-After (seconds) and is retried after that wait; 5xx and connection
errors are retried with exponential backoff and jitter; 4xx is never retried, because
repeating a rejected payload can get the app disabled.

The webhook URL is a secret (anyone holding it can post): it never goes into a log line or
an exception message, and library exceptions that might carry it are not chained.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import structlog
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from enrichment.core.settings import SlackConfig
from enrichment.monitoring.alerts import RUNBOOK, Notification

log = structlog.get_logger(__name__)

# Slack's block limits: section text 3000 characters, 50 blocks per message.
MAX_SECTION_CHARS = 3000
MAX_BLOCKS = 50
EMOJI = {"critical": ":red_circle:", "warning": ":large_orange_circle:"}


class SlackError(Exception):
    """A webhook post failed. `status` is the HTTP status (0: no answer); `error` is Slack's
    error string. Neither the message nor the attributes contain the webhook URL."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(f"slack webhook answered {status}: {error}")
        self.status = status
        self.error = error


class SlackRejected(SlackError):
    """4xx (or a bad URL): retrying cannot help."""


class SlackUnavailable(SlackError):
    """429, 5xx or no answer: worth retrying. `retry_after_s` is Slack's Retry-After."""

    def __init__(self, status: int, error: str, retry_after_s: float | None = None) -> None:
        super().__init__(status, error)
        self.retry_after_s = retry_after_s


def webhook_for(tenant_settings: dict[str, Any], config: SlackConfig) -> str | None:
    """The tenant's own webhook, else the global one, else None."""
    return tenant_settings.get("slack_webhook_url") or config.webhook_url


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


def _post_once(url: str, payload: dict[str, Any], timeout_s: float) -> None:
    error = _attempt(url, payload, timeout_s)
    # Raised here, outside the except blocks, so the library exception (whose attributes
    # hold the URL) is neither the cause nor the context of ours.
    if error is not None:
        raise error


def _attempt(url: str, payload: dict[str, Any], timeout_s: float) -> SlackError | None:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        return SlackRejected(0, "invalid webhook URL")
    req = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 (http/s only)
            resp.read()
    except urllib.error.HTTPError as exc:
        return _from_http_error(exc)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        # Only the error's class name: str() of some socket errors can include the host.
        return SlackUnavailable(
            0, type(reason).__name__ if isinstance(reason, Exception) else "URLError"
        )
    return None


def _from_http_error(exc: urllib.error.HTTPError) -> SlackError:
    body = exc.read().decode(errors="replace").strip()[:200] or exc.reason
    if exc.code == 429 or exc.code >= 500:
        return SlackUnavailable(exc.code, body, _retry_after(exc.headers.get("Retry-After")))
    return SlackRejected(exc.code, body)


def _retry_after(raw: str | None) -> float | None:
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None


def _wait(state: RetryCallState) -> float:
    """Slack's Retry-After when it sent one, else exponential backoff with jitter."""
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, SlackUnavailable) and exc.retry_after_s is not None:
        return exc.retry_after_s
    return wait_exponential_jitter(initial=1.0, max=10.0, jitter=1.0)(state)


def _stop(config: SlackConfig) -> Callable[[RetryCallState], bool]:
    attempts = stop_after_attempt(config.max_attempts)

    def stop(state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        too_long = getattr(exc, "retry_after_s", None) or 0.0
        return attempts(state) or too_long > config.max_retry_after_s

    return stop


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception()
    log.info("slack.retrying", attempt=state.attempt_number, status=exc.status, error=exc.error)


def post(
    url: str,
    payload: dict[str, Any],
    config: SlackConfig,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """POST one message; raise SlackRejected (4xx, not retried) or SlackUnavailable (after
    the retries ran out). Logs Slack's error string, never the URL."""
    retrying = Retrying(
        stop=_stop(config),
        wait=_wait,
        retry=retry_if_exception_type(SlackUnavailable),
        before_sleep=_log_retry,
        sleep=sleep,
        reraise=True,
    )
    try:
        retrying(_post_once, url, payload, config.timeout_s)
    except SlackError as exc:
        log.warning("slack.failed", status=exc.status, error=exc.error, final=_is_final(exc))
        raise
    log.info("slack.sent", blocks=len(payload.get("blocks", [])))


def _is_final(exc: SlackError) -> bool:
    return isinstance(exc, SlackRejected)
