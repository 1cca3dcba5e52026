"""Tenant webhooks: where an event may go (the SSRF checks), the signing secret, the signature.

A webhook URL and its secret are both secrets: neither goes into a log line or an error
message. The URL is checked when it is configured and again before every POST, because DNS
can change in between; the POST then connects to the very address the check approved
(`post.py`), so a host re-pointed between the check and the connect cannot reach inside.

Signatures follow Standard Webhooks (standardwebhooks.com) through the `standardwebhooks`
package: `v1,` + base64(HMAC-SHA256(secret, f"{id}.{timestamp}.{body}")).
"""

from __future__ import annotations

import base64
import ipaddress
import secrets
import socket
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from enrichment.core.models import Tenant
from enrichment.core.settings import WebhookConfig

SECRET_PREFIX = "whsec_"
# Standard Webhooks asks for 24 to 64 bytes of key; 32 is HMAC-SHA256's block-friendly size.
SECRET_BYTES = 32
MAX_URL_CHARS = 2048
DEFAULT_PORTS = {"https": 443, "http": 80}
# ipaddress's categories a webhook may never reach, most specific first: the first that
# holds names the reason (ipaddress counts 0.0.0.0/8 and 169.254/16 as private too).
REFUSED = ("unspecified", "loopback", "link_local", "multicast", "reserved", "private")

Resolver = Callable[[str, int], list[str]]


class UnsafeURL(ValueError):
    """The URL may not be a webhook. The message says why in one line, never with the URL."""


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (`address`, approved) and what to ask for."""

    scheme: str
    host: str
    port: int
    path: str
    address: str


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to now (IPv4 and IPv6), as strings."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def check_url(url: str, config: WebhookConfig, *, resolver: Resolver = resolve) -> Target:
    """The URL's target if a webhook may be sent there, else UnsafeURL.

    https only, and every address the host resolves to must be public: not loopback,
    private, link-local, multicast, reserved, unspecified or otherwise non-global.
    `config.allow_private` (ENRICHMENT_WEBHOOK_ALLOW_PRIVATE=1; tests and the demo) lifts
    both rules, for local receivers without TLS."""
    scheme, host, port, path = _parse(url, config)
    addresses = _addresses(host, port, resolver)
    if not config.allow_private:
        for address in addresses:
            reason = refused_reason(address)
            if reason is not None:
                raise UnsafeURL(
                    f"the webhook host resolves to a {reason} address; use a public https endpoint"
                )
    return Target(scheme, host, port, path, addresses[0])


def _parse(url: str, config: WebhookConfig) -> tuple[str, str, int, str]:
    if len(url) > MAX_URL_CHARS:
        raise UnsafeURL(f"the webhook URL is longer than {MAX_URL_CHARS} characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise UnsafeURL("the webhook URL contains spaces or control characters")
    if not url.isascii():
        raise UnsafeURL("the webhook URL must be ASCII: percent-encode it (punycode for the host)")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeURL("the webhook URL could not be parsed") from None
    allowed = ("https", "http") if config.allow_private else ("https",)
    if parts.scheme not in allowed:
        hint = "" if config.allow_private else " (http:// needs ENRICHMENT_WEBHOOK_ALLOW_PRIVATE=1)"
        raise UnsafeURL(f"the webhook URL must start with https://{hint}")
    if not parts.hostname:
        raise UnsafeURL("the webhook URL has no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeURL("the webhook URL must not carry a user name or password")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme], path


def _addresses(host: str, port: int, resolver: Resolver) -> list[str]:
    try:
        addresses = resolver(host, port)
    except (OSError, UnicodeError):
        addresses = []
    if not addresses:
        raise UnsafeURL("the webhook host does not resolve")
    return addresses


def refused_reason(address: str) -> str | None:
    """Why a webhook may not reach `address` ("loopback", "private", ...), or None."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone ("fe80::1%eth0")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    for name in REFUSED:
        if getattr(ip, f"is_{name}"):
            return name.replace("_", "-")
    # e.g. 100.64.0.0/10 (carrier-grade NAT): none of the above, still not the internet.
    return None if ip.is_global else "non-public"


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
