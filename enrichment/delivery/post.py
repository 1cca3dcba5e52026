"""One signed POST of one event, and what its answer means.

Plain `http.client` on a connection pinned to the address `webhooks.check_url` approved a
moment before: nothing re-resolves the host between the check and the connect, and nothing
follows a redirect (a 3xx stops the event like any other refusal, for a person to look at).

Answers: 2xx delivered; 429, 5xx, timeouts and connection errors are worth retrying; any
other status stops. `error` holds the status or the exception's class name only: exception
texts can carry the host, and the URL is a secret.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from dataclasses import dataclass
from datetime import datetime

from enrichment.core.models import utcnow
from enrichment.core.settings import WebhookConfig
from enrichment.delivery import webhooks

DELIVERED, RETRY, STOP, SKIPPED = "delivered", "retry", "stop", "skipped"
# The answer's body is not used; read a little so a keep-alive peer sees a clean close.
MAX_ANSWER_BYTES = 4096
USER_AGENT = "enrichment-webhooks/1"


@dataclass(frozen=True)
class Answer:
    """kind: DELIVERED, RETRY, STOP or SKIPPED (not sent); status: the HTTP status, if any."""

    kind: str
    status: int | None = None
    error: str | None = None


def classify(status: int) -> Answer:
    """What an HTTP status means for the event (pure)."""
    if 200 <= status < 300:
        return Answer(DELIVERED, status)
    if status == 429 or status >= 500:
        return Answer(RETRY, status, f"HTTP {status}")
    if 300 <= status < 400:
        return Answer(STOP, status, f"HTTP {status}: redirects are not followed")
    return Answer(STOP, status, f"HTTP {status}")


def send(
    url: str,
    secret: str,
    msg_id: str,
    body: str,
    config: WebhookConfig,
    *,
    now: datetime | None = None,
) -> Answer:
    """Check the URL again, sign, POST once; never raises for a network failure."""
    try:
        target = webhooks.check_url(url, config)
    except webhooks.UnsafeURL as exc:
        return Answer(STOP, None, f"webhook URL refused: {exc}")
    headers = webhooks.signed_headers(secret, msg_id, body, now or utcnow())
    headers["user-agent"] = USER_AGENT
    try:
        status = _post(target, body.encode(), headers, config.timeout_s)
    except (OSError, http.client.HTTPException) as exc:  # timeouts are OSErrors too
        return Answer(RETRY, None, type(exc).__name__)
    return classify(status)


def _post(target: webhooks.Target, body: bytes, headers: dict[str, str], timeout_s: float) -> int:
    conn = _connection(target, timeout_s)
    try:
        conn.request("POST", target.path, body=body, headers=headers)
        answer = conn.getresponse()
        answer.read(MAX_ANSWER_BYTES)
        return answer.status
    finally:
        conn.close()


def _connection(target: webhooks.Target, timeout_s: float) -> http.client.HTTPConnection:
    if target.scheme == "https":
        return _PinnedHTTPS(target, timeout_s)
    return _PinnedHTTP(target, timeout_s)


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to the approved address; the Host header still names the host."""

    def __init__(self, target: webhooks.Target, timeout_s: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout_s)
        self._address = target.address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(_PinnedHTTP):
    """TLS to the approved address, with the certificate checked against the host name."""

    default_port = 443

    def __init__(self, target: webhooks.Target, timeout_s: float) -> None:
        super().__init__(target, timeout_s)
        self._tls = ssl.create_default_context()

    def connect(self) -> None:
        super().connect()
        self.sock = self._tls.wrap_socket(self.sock, server_hostname=self.host)
