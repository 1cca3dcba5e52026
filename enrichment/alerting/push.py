"""One JSON POST to an alert channel (Slack, PagerDuty), with the retry rules they share.

Each POST goes through the guarded sender the tenant webhooks use (core/outbound.py): https
only, every address the host resolves to public, the connection pinned to the address checked,
and a redirect is a failure, never followed.

429 (after its Retry-After, when it sent one), 5xx and no answer are retried with exponential
backoff and jitter; any other 4xx is never retried: repeating a rejected payload cannot help,
and hammering Slack can get the app disabled. A Retry-After over `max_retry_after_s` gives up
until the next evaluation.

The URL (a Slack webhook) and the secrets named in `secrets` (a PagerDuty routing key) never go
into a log line or an exception message, and library exceptions that might carry them are not
chained.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from enrichment.core import outbound

log = structlog.get_logger(__name__)
ERROR_CHARS = 200
USER_AGENT = "enrichment-alerts/1"


class RetryConfig(Protocol):
    """What a channel's settings give: per-request timeout, attempts in all, and the longest
    Retry-After worth waiting for."""

    timeout_s: float
    max_attempts: int
    max_retry_after_s: float


class PushError(Exception):
    """A POST failed. `status` is the HTTP status (0: no answer); `error` is the channel's
    error text. Neither the message nor the attributes contain the URL or a secret."""

    def __init__(self, status: int, error: str, *, channel: str = "channel") -> None:
        super().__init__(f"{channel} answered {status}: {error}")
        self.status = status
        self.error = error


class PushRejected(PushError):
    """4xx, a redirect, or a URL the guarded sender refuses: retrying cannot help."""


class PushUnavailable(PushError):
    """429, 5xx or no answer: worth retrying. `retry_after_s` is the channel's Retry-After."""

    def __init__(
        self, status: int, error: str, retry_after_s: float | None = None, *, channel: str = ""
    ) -> None:
        super().__init__(status, error, channel=channel or "channel")
        self.retry_after_s = retry_after_s


def plain_text(body: str) -> str:
    """The default reading of an error body: its text, as Slack sends it."""
    return body.strip()


@dataclass(frozen=True)
class Channel:
    """One channel's POST: its name in error messages ("slack webhook"), its log events'
    prefix ("slack"), how to read its error bodies, and the strings that must never show."""

    name: str
    log_as: str
    describe: Callable[[str], str] = plain_text
    secrets: tuple[str, ...] = ()

    def scrub(self, text: str) -> str:
        for secret in filter(None, self.secrets):
            text = text.replace(secret, "[redacted]")
        return text[:ERROR_CHARS]

    def once(
        self, url: str, payload: dict[str, Any], timeout_s: float, allow_private: bool = False
    ) -> bytes:
        """One POST through the guarded sender (core/outbound.py): https only unless
        `allow_private`, every address checked, the connection pinned, no redirect followed."""
        target, error = self._target(url, allow_private)
        if target is not None:
            body = json.dumps(payload).encode()
            answer, error = self._attempt(target, body, timeout_s)
        # Raised here, outside the except blocks, so the library exception (which may name
        # the host) is neither the cause nor the context of ours.
        if error is not None:
            raise error
        return self._judge(answer)

    def _target(self, url: str, allow_private: bool):
        try:
            return outbound.check_url(url, allow_private=allow_private, what=self.name), None
        except outbound.Unresolved as exc:  # DNS may answer on the next try
            return None, PushUnavailable(0, str(exc), channel=self.name)
        except outbound.UnsafeURL as exc:
            return None, PushRejected(0, f"URL refused: {exc}", channel=self.name)

    def _attempt(self, target: outbound.Target, body: bytes, timeout_s: float):
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        try:
            return outbound.post(target, body, headers, timeout_s), None
        except (OSError, http.client.HTTPException) as exc:  # timeouts are OSErrors too
            # Only the error's class name: str() of some socket errors can include the host.
            return None, PushUnavailable(0, type(exc).__name__, channel=self.name)

    def _judge(self, answer: outbound.Response) -> bytes:
        status = answer.status
        if 200 <= status < 300:
            return answer.body
        if 300 <= status < 400:  # a redirect could lead anywhere the check never saw
            raise PushRejected(status, "redirects are not followed", channel=self.name)
        error = self.scrub(self.describe(answer.body.decode(errors="replace")) or f"HTTP {status}")
        if status == 429 or status >= 500:
            wait = _retry_after(answer.retry_after)
            raise PushUnavailable(status, error, wait, channel=self.name)
        raise PushRejected(status, error, channel=self.name)


def _retry_after(raw: str | None) -> float | None:
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None


def _wait(state: RetryCallState) -> float:
    """The channel's Retry-After when it sent one, else exponential backoff with jitter."""
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, PushUnavailable) and exc.retry_after_s is not None:
        return exc.retry_after_s
    return wait_exponential_jitter(initial=1.0, max=10.0, jitter=1.0)(state)


def _stop(config: RetryConfig) -> Callable[[RetryCallState], bool]:
    attempts = stop_after_attempt(config.max_attempts)

    def stop(state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        too_long = getattr(exc, "retry_after_s", None) or 0.0
        return attempts(state) or too_long > config.max_retry_after_s

    return stop


def post_json(
    url: str,
    payload: dict[str, Any],
    config: RetryConfig,
    channel: Channel,
    *,
    allow_private: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> bytes:
    """POST `payload`; return the answer's body. Raise PushRejected (4xx, a 3xx, a refused
    URL: not retried) or PushUnavailable (after the retries ran out). `allow_private`
    (ENRICHMENT_WEBHOOK_ALLOW_PRIVATE) admits http:// and private addresses, for tests. Logs
    `<log_as>.retrying|failed` with the status and the channel's error text, never the URL
    or a secret."""
    log_as = channel.log_as

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception()
        log.info(f"{log_as}.retrying", attempt=state.attempt_number, status=exc.status,
                 error=exc.error)  # fmt: skip

    retrying = Retrying(
        stop=_stop(config),
        wait=_wait,
        retry=retry_if_exception_type(PushUnavailable),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )
    try:
        body = retrying(channel.once, url, payload, config.timeout_s, allow_private)
    except PushError as exc:
        final = isinstance(exc, PushRejected)
        log.warning(f"{log_as}.failed", status=exc.status, error=exc.error, final=final)
        raise
    return body
