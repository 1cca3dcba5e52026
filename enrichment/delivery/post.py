"""One signed POST of one event, and what its answer means.

Through core's guarded sender (core/outbound.py): a connection pinned to the address
`webhooks.check_url` approved a moment before, so nothing re-resolves the host between the
check and the connect, and nothing follows a redirect (a 3xx stops the event like any other
refusal, for a person to look at).

Answers: 2xx delivered; 429, 5xx, timeouts and connection errors are worth retrying; any
other status stops. `error` holds the status or the exception's class name only: exception
texts can carry the host, and the URL is a secret.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from enrichment.core import outbound
from enrichment.core.models import utcnow
from enrichment.core.settings import WebhookConfig
from enrichment.delivery import webhooks

DELIVERED, RETRY, STOP, SKIPPED = "delivered", "retry", "stop", "skipped"
USER_AGENT = "enrichment-webhooks/1"


@dataclass(frozen=True)
class Answer:
    """kind: DELIVERED, RETRY, STOP or SKIPPED (not sent); status: the HTTP status, if any;
    duration_s: how long the POST took, if one was made; first_line: the answer body's first
    line (`enrichment webhook test` prints it; never logged or stored)."""

    kind: str
    status: int | None = None
    error: str | None = None
    duration_s: float | None = None
    first_line: str = ""


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
    secrets: str | Sequence[str],
    msg_id: str,
    body: str,
    config: WebhookConfig,
    *,
    now: datetime | None = None,
) -> Answer:
    """Check the URL again, sign (one signature per secret: a rotation's overlap sends two),
    POST once; never raises for a network failure."""
    try:
        target = webhooks.check_url(url, config)
    except webhooks.UnsafeURL as exc:
        return Answer(STOP, None, f"webhook URL refused: {exc}")
    headers = webhooks.signed_headers(secrets, msg_id, body, now or utcnow())
    headers["user-agent"] = USER_AGENT
    started = time.monotonic()
    try:
        answer = outbound.post(target, body.encode(), headers, config.timeout_s)
    except (OSError, http.client.HTTPException) as exc:  # timeouts are OSErrors too
        return replace(Answer(RETRY, None, type(exc).__name__), duration_s=_since(started))
    line = answer.body.decode(errors="replace").strip().split("\n", 1)[0][:200]
    return replace(classify(answer.status), duration_s=_since(started), first_line=line)


def _since(started: float) -> float:
    return time.monotonic() - started
