"""The guarded sender: every POST the fleet makes to an address someone configured (tenant
webhooks, Slack, PagerDuty) is checked here, then sent on a connection pinned to the
address the check approved.

The check (SSRF): https only, and every address the host resolves to must be public, the
IPv4 inside a 6to4, Teredo, NAT64, IPv4-mapped or IPv4-compatible IPv6 address included.
`allow_private` (ENRICHMENT_WEBHOOK_ALLOW_PRIVATE=1: tests and the demo) lifts both rules,
for local receivers without TLS. The send: plain `http.client` to the approved address, so
nothing re-resolves the host between the check and the connect (DNS rebinding), and nothing
follows a redirect: the caller sees the 3xx.

A URL may hold a secret (a Slack webhook's path): no message here carries the URL or host.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from enrichment.core.settings_env import ConfigurationError

MAX_URL_CHARS = 2048
DEFAULT_PORTS = {"https": 443, "http": 80}
# The answer is read up to this: enough for an error text or a small JSON answer.
MAX_ANSWER_BYTES = 16_384
# ipaddress's categories never reached, most specific first: the first that holds names the
# reason (ipaddress counts 0.0.0.0/8 and 169.254/16 as private too).
REFUSED = ("unspecified", "loopback", "link_local", "multicast", "reserved", "private")
# Special-purpose blocks (RFC 6890 and later) refused whatever this interpreter's tables say:
# `is_global` has moved between Python releases (3.11.7 calls 192.0.0.8 and 3fff::1 global).
# 64:ff9b:1::/48 is local-use NAT64 (RFC 8215): where it leads is the local operator's choice.
SPECIAL = tuple(
    ipaddress.ip_network(block)
    for block in (
        "0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24",
        "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4",
        "100::/64", "2001::/23", "2001:db8::/32", "3fff::/20", "5f00::/16", "64:ff9b:1::/48",
        "fc00::/7", "fec0::/10",
    )
)  # fmt: skip
NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")

Resolver = Callable[[str, int], list[str]]


class UnsafeURL(ValueError):
    """The URL may not be posted to. The message says why in one line, never with the URL."""


class Unresolved(UnsafeURL):
    """The host does not resolve now: a later try may succeed."""


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (`address`, approved) and what to ask for."""

    scheme: str
    host: str
    port: int
    path: str
    address: str


@dataclass(frozen=True)
class Response:
    """A POST's answer: its status, its Retry-After header (raw) and the first bytes of it."""

    status: int
    body: bytes
    retry_after: str | None = None


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to now (IPv4 and IPv6), as strings."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def check_url(
    url: str, *, allow_private: bool, what: str = "webhook", resolver: Resolver | None = None
) -> Target:
    """The URL's target if it may be posted to, else UnsafeURL (Unresolved: no address).

    `what` names the URL in messages ("webhook", "Slack webhook"). Every address the host
    resolves to must pass `refused_reason`, unless `allow_private`."""
    scheme, host, port, path = parse_url(url, allow_private=allow_private, what=what)
    addresses = _addresses(host, port, resolver or resolve, what)
    if not allow_private:
        for address in addresses:
            reason = refused_reason(address)
            if reason is not None:
                raise UnsafeURL(
                    f"the {what} host resolves to a {reason} address; use a public https endpoint"
                )
    return Target(scheme, host, port, path, addresses[0])


def check_literal(url: str, *, allow_private: bool, what: str) -> None:
    """`check_url` without DNS: the URL's form, and its host when that is an IP address or
    "localhost". For start-up checks, where a resolver's hiccup must not stop the fleet;
    every send checks again, DNS included."""
    _, host, _, _ = parse_url(url, allow_private=allow_private, what=what)
    if allow_private:
        return
    if host.lower().rstrip(".") == "localhost" or host.lower().endswith(".localhost"):
        raise UnsafeURL(f"the {what} host is a loopback address; use a public https endpoint")
    try:
        reason = refused_reason(host)
    except ValueError:
        return  # a name: resolved and checked when it is used
    if reason is not None:
        raise UnsafeURL(f"the {what} host is a {reason} address; use a public https endpoint")


def check_setting(var: str, url: str | None, *, allow_private: bool, what: str) -> None:
    """A destination set in the environment (SLACK_WEBHOOK_URL, ENRICHMENT_PAGERDUTY_URL),
    checked at start-up by `check_literal`; else ConfigurationError, one line."""
    if url is None:
        return
    try:
        check_literal(url, allow_private=allow_private, what=what)
    except UnsafeURL as exc:
        raise ConfigurationError(f"{var} is refused: {exc}") from None


def parse_url(url: str, *, allow_private: bool, what: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path and query) of a URL of an accepted form, else UnsafeURL."""
    if len(url) > MAX_URL_CHARS:
        raise UnsafeURL(f"the {what} URL is longer than {MAX_URL_CHARS} characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise UnsafeURL(f"the {what} URL contains spaces or control characters")
    if not url.isascii():
        raise UnsafeURL(f"the {what} URL must be ASCII: percent-encode it (punycode for the host)")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeURL(f"the {what} URL could not be parsed") from None
    if parts.scheme not in (("https", "http") if allow_private else ("https",)):
        hint = "" if allow_private else " (http:// needs ENRICHMENT_WEBHOOK_ALLOW_PRIVATE=1)"
        raise UnsafeURL(f"the {what} URL must start with https://{hint}")
    if not parts.hostname:
        raise UnsafeURL(f"the {what} URL has no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeURL(f"the {what} URL must not carry a user name or password")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme], path


def _addresses(host: str, port: int, resolver: Resolver, what: str) -> list[str]:
    try:
        addresses = resolver(host, port)
    except (OSError, UnicodeError):
        addresses = []
    if not addresses:
        raise Unresolved(f"the {what} host does not resolve")
    return addresses


def refused_reason(address: str) -> str | None:
    """Why no POST may reach `address` ("loopback", "private", ...), or None. An IPv6
    address that carries an IPv4 one is judged by both: "loopback (in 6to4)"."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone ("fe80::1%eth0")
    for kind, inner in embedded(ip):
        reason = _reason(inner)
        if reason is not None:
            return f"{reason} (in {kind})"
    return _reason(ip)


def embedded(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[tuple[str, object]]:
    """The IPv4 addresses an IPv6 one carries, by mechanism: ("6to4", 127.0.0.1), ..."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    if ip.ipv4_mapped is not None:
        return [("IPv4-mapped", ip.ipv4_mapped)]
    if ip.sixtofour is not None:
        return [("6to4", ip.sixtofour)]
    if ip.teredo is not None:
        server, client = ip.teredo
        return [("Teredo", server), ("Teredo", client)]
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in NAT64:
        return [("NAT64", low32)]
    if ip in IPV4_COMPATIBLE and int(ip) > 1:  # not :: or ::1, themselves
        return [("IPv4-compatible", low32)]
    return []


def _reason(ip) -> str | None:
    for name in REFUSED:
        if getattr(ip, f"is_{name}"):
            return name.replace("_", "-")
    # e.g. 100.64.0.0/10 (carrier-grade NAT), or a block this interpreter calls global.
    special = any(ip in block for block in SPECIAL if block.version == ip.version)
    return "non-public" if special or not ip.is_global else None


def post(target: Target, body: bytes, headers: dict[str, str], timeout_s: float) -> Response:
    """One POST to the approved address; a 3xx is returned, never followed. Raises OSError
    (timeouts included) or http.client.HTTPException when there is no answer."""
    conn = (
        _PinnedHTTPS(target, timeout_s)
        if target.scheme == "https"
        else _PinnedHTTP(target, timeout_s)
    )
    try:
        conn.request("POST", target.path, body=body, headers=headers)
        answer = conn.getresponse()
        return Response(
            answer.status, answer.read(MAX_ANSWER_BYTES), answer.getheader("Retry-After")
        )
    finally:
        conn.close()


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to the approved address; the Host header still names the host."""

    def __init__(self, target: Target, timeout_s: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout_s)
        self._address = target.address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(_PinnedHTTP):
    """TLS to the approved address, with the certificate checked against the host name."""

    default_port = 443

    def __init__(self, target: Target, timeout_s: float) -> None:
        super().__init__(target, timeout_s)
        self._tls = ssl.create_default_context()

    def connect(self) -> None:
        super().connect()
        self.sock = self._tls.wrap_socket(self.sock, server_hostname=self.host)
