"""Tenant webhooks: where an event may go (the SSRF checks), the signing secret, the signature.

A webhook URL and its secret are both secrets: neither goes into a log line or an error
message. The URL is checked when it is configured and again before every POST, because DNS
can change in between; the POST then connects to the very address the check approved
(core/outbound.py, the guarded sender Slack and PagerDuty share), so a host re-pointed
between the check and the connect cannot reach inside.

Signatures follow Standard Webhooks (standardwebhooks.com) through the `standardwebhooks`
package: `v1,` + base64(HMAC-SHA256(secret, f"{id}.{timestamp}.{body}")).
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from enrichment.core import outbound
from enrichment.core.models import Tenant
from enrichment.core.settings import WebhookConfig

SECRET_PREFIX = "whsec_"
# Standard Webhooks asks for 24 to 64 bytes of key; 32 is HMAC-SHA256's block-friendly size.
SECRET_BYTES = 32

# The checks themselves are core's guarded sender (Slack and PagerDuty use it too).
UnsafeURL = outbound.UnsafeURL


def check_url(
    url: str, config: WebhookConfig, *, resolver: outbound.Resolver | None = None
) -> outbound.Target:
    """The URL's target if a webhook may be sent there, else UnsafeURL (outbound.check_url:
    https only and every resolved address public, unless `config.allow_private`)."""
    return outbound.check_url(url, allow_private=config.allow_private, resolver=resolver)


def new_secret() -> str:
    """A fresh signing secret: "whsec_" + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def configure(tenant: Tenant, url: str | None, config: WebhookConfig) -> str | None:
    """Set the tenant's webhook and return its new signing secret (shown once by the CLI),
    or remove it (url None: the tenant pulls instead) and return None.

    Raises UnsafeURL (a ValueError, one line) for a URL `check_url` refuses. Every new URL
    gets a new secret, so an old receiver's secret never signs for a new one."""
    if url is None:
        tenant.webhook_url = None
        tenant.webhook_secret = None
        return None
    url = url.strip()
    check_url(url, config)
    secret = new_secret()
    tenant.webhook_url = url
    tenant.webhook_secret = secret
    return secret


def sign(secret: str, msg_id: str, timestamp: datetime, body: str) -> str:
    """The `webhook-signature` value for `body` sent as `msg_id` at `timestamp` (aware)."""
    return Webhook(secret).sign(msg_id, timestamp.astimezone(UTC), body)


def signed_headers(secret: str, msg_id: str, body: str, now: datetime) -> dict[str, str]:
    """The Standard Webhooks headers (and the content type) for one POST of `body`."""
    stamp = now.astimezone(UTC).replace(microsecond=0)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": sign(secret, msg_id, stamp, body),
    }
