"""Tenant webhooks: where an event may go (the SSRF checks), the signing secret, the signature.

A webhook URL and its secret are both secrets: neither goes into a log line or an error
message. The URL is checked when it is configured and again before every POST, because DNS
can change in between; the POST then connects to the very address the check approved
(core/outbound.py, the guarded sender Slack and PagerDuty share), so a host re-pointed
between the check and the connect cannot reach inside.

Signatures follow Standard Webhooks (standardwebhooks.com) through the `standardwebhooks`
package: `v1,` + base64(HMAC-SHA256(secret, f"{id}.{timestamp}.{body}")). During a
rotation's overlap the header holds two, space-separated: the new secret's, then the old
one's; a receiver accepts the request if any of them verifies with its secret.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

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


def configure(
    tenant: Tenant,
    url: str | None,
    config: WebhookConfig,
    *,
    rotate: bool = False,
    now: datetime | None = None,
) -> str | None:
    """Set the tenant's webhook and return its signing secret, or remove it (url None: the
    tenant pulls instead) and return None.

    A new URL keeps the secret the tenant has: the receiver already verifies with it. A new
    secret is made when there is none, or with `rotate`; a rotation keeps the old secret
    signing beside it for `config.secret_overlap_s` (`signing_secrets`), so no event is
    refused while the receiver switches. Raises UnsafeURL (a ValueError, one line) for a URL
    `check_url` refuses, and changes nothing then."""
    if url is None:
        tenant.webhook_url = tenant.webhook_secret = tenant.webhook_previous_secret = None
        tenant.webhook_previous_until = None
        return None
    url = url.strip()
    check_url(url, config)
    tenant.webhook_url = url
    if tenant.webhook_secret and not rotate:
        return tenant.webhook_secret
    if tenant.webhook_secret and config.secret_overlap_s > 0:
        until = (now or datetime.now(UTC)) + timedelta(seconds=config.secret_overlap_s)
        tenant.webhook_previous_secret, tenant.webhook_previous_until = tenant.webhook_secret, until
    else:
        tenant.webhook_previous_secret = tenant.webhook_previous_until = None
    tenant.webhook_secret = new_secret()
    return tenant.webhook_secret


def signing_secrets(
    secret: str | None, previous: str | None, previous_until: datetime | None, now: datetime
) -> tuple[str, ...]:
    """The secrets that sign a POST at `now` (pure): the current one, and the previous one
    while its overlap lasts. Empty without a current secret."""
    if not secret:
        return ()
    if previous and previous_until is not None and now < previous_until:
        return (secret, previous)
    return (secret,)


def sign(secret: str, msg_id: str, timestamp: datetime, body: str) -> str:
    """The `webhook-signature` value for `body` sent as `msg_id` at `timestamp` (aware)."""
    return Webhook(secret).sign(msg_id, timestamp.astimezone(UTC), body)


def signed_headers(
    secrets: str | Sequence[str], msg_id: str, body: str, now: datetime
) -> dict[str, str]:
    """The Standard Webhooks headers (and the content type) for one POST of `body`: one
    `v1,` signature per secret, space-separated, the current secret's first."""
    stamp = now.astimezone(UTC).replace(microsecond=0)
    keys = (secrets,) if isinstance(secrets, str) else tuple(secrets)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": " ".join(sign(key, msg_id, stamp, body) for key in keys),
    }
