"""One JSON POST to an alert channel (Slack, PagerDuty), with the retry rules they share.

429 (after its Retry-After, when it sent one), 5xx and no answer are retried with exponential
backoff and jitter; any other 4xx is never retried: repeating a rejected payload cannot help,
and hammering Slack can get the app disabled. A Retry-After over `max_retry_after_s` gives up
until the next evaluation.

The URL (a Slack webhook) and the secrets named in `secrets` (a PagerDuty routing key) never go
into a log line or an exception message, and library exceptions that might carry them are not
chained.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
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

log = structlog.get_logger(__name__)
ERROR_CHARS = 200


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
    """4xx (or a bad URL): retrying cannot help."""


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

    def once(self, url: str, payload: dict[str, Any], timeout_s: float) -> bytes:
        body, error = self._attempt(url, payload, timeout_s)
        # Raised here, outside the except blocks, so the library exception (whose attributes
        # hold the URL) is neither the cause nor the context of ours.
        if error is not None:
            raise error
        return body

    def _attempt(self, url: str, payload: dict[str, Any], timeout_s: float):
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            return b"", PushRejected(0, "invalid URL", channel=self.name)
        req = urllib.request.Request(
            url,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 (http/s)
                return resp.read(), None
        except urllib.error.HTTPError as exc:
            return b"", self._from_http_error(exc)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            # Only the error's class name: str() of some socket errors can include the host.
            name = type(reason).__name__ if isinstance(reason, Exception) else "URLError"
            return b"", PushUnavailable(0, name, channel=self.name)

    def _from_http_error(self, exc: urllib.error.HTTPError) -> PushError:
        body = exc.read().decode(errors="replace")
        error = self.scrub(self.describe(body) or str(exc.reason))
        if exc.code == 429 or exc.code >= 500:
            wait = _retry_after(exc.headers.get("Retry-After"))
            return PushUnavailable(exc.code, error, wait, channel=self.name)
        return PushRejected(exc.code, error, channel=self.name)


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
    sleep: Callable[[float], None] = time.sleep,
) -> bytes:
    """POST `payload`; return the answer's body. Raise PushRejected (4xx, not retried) or
    PushUnavailable (after the retries ran out). Logs `<log_as>.retrying|failed` with the
    status and the channel's error text, never the URL or a secret."""
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
        body = retrying(channel.once, url, payload, config.timeout_s)
    except PushError as exc:
        final = isinstance(exc, PushRejected)
        log.warning(f"{log_as}.failed", status=exc.status, error=exc.error, final=final)
        raise
    return body
