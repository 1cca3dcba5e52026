"""Standard Webhooks signatures, signing secrets, and which webhook URLs are allowed (SSRF)."""

from __future__ import annotations

import base64
import socket
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from enrichment.core.models import OutboxEvent, Tenant
from enrichment.core.outbox import body, webhook_id
from enrichment.core.settings import WebhookConfig
from enrichment.delivery import webhooks
from enrichment.delivery.deliver import deliver_due
from tests import test_delivery
from tests.test_delivery import CONFIG, connect, enrich, events_of

STRICT = WebhookConfig()
PRIVATE_OK = WebhookConfig(allow_private=True)
receivers = test_delivery.receivers  # the fixture, found by name


def test_our_signature_matches_the_specs_published_example():
    signature = webhooks.sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        datetime.fromtimestamp(1614265330, UTC),
        '{"test": 2432232314}',
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_a_new_secret_is_whsec_and_32_random_bytes():
    one, two = webhooks.new_secret(), webhooks.new_secret()
    assert one.startswith("whsec_") and one != two
    assert len(base64.b64decode(one.removeprefix("whsec_"))) == 32
    assert len(one) <= Tenant.__table__.c.webhook_secret.type.length


def test_delivered_headers_verify_with_the_reference_verifier_and_a_tampered_body_fails(
    factory, settings, receivers
):
    r = receivers()
    secret = connect(factory, "acme", r)
    enrich(factory, settings, "acme", 1)

    deliver_due(factory, CONFIG)

    event: OutboxEvent = events_of(factory)[0]
    first = r.requests[0]
    assert r.bad_signatures == 0 and first.webhook_id == webhook_id(event.id)
    assert first.body == body(event.type, event.data, event.created_at)
    assert first.headers["content-type"] == "application/json"
    assert Webhook(secret).verify(first.body, first.headers)["type"] == "record.enriched"
    tampered = first.body.replace('"acme"', '"evil"')
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(tampered, first.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(webhooks.new_secret()).verify(first.body, first.headers)


def test_a_receiver_with_the_wrong_secret_counts_bad_signatures(factory, settings, receivers):
    r = receivers()
    connect(factory, "acme", r)
    r.secret = webhooks.new_secret()  # the receiver kept an old secret
    enrich(factory, settings, "acme", 1)

    deliver_due(factory, CONFIG)

    assert r.bad_signatures == 3 and r.unique_ids() == set()
    assert {e.last_error for e in events_of(factory)} == {"HTTP 401"}


def test_a_body_cut_short_by_a_dying_sender_is_incomplete_not_a_bad_signature(receivers):
    """A sender SIGKILLed mid-send leaves half a body: nothing to verify and nobody to answer."""
    r = receivers(secret=webhooks.new_secret())
    port = int(r.url.split(":")[2].split("/")[0])
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"POST /hooks/enrichment HTTP/1.1\r\nHost: x\r\nwebhook-id: msg_1\r\n"
                     b"Content-Length: 100\r\n\r\n{\"type\": \"record.enr")  # fmt: skip
        conn.shutdown(socket.SHUT_WR)
        assert conn.recv(100) == b""  # no answer: the connection is closed

    assert [(q.webhook_id, q.answer, q.kept) for q in r.requests] == [
        ("msg_1", "incomplete", False)
    ]
    assert r.bad_signatures == 0 and r.unique_ids() == set()


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://93.184.215.14/hook", "must start with https://"),
        ("ftp://93.184.215.14/hook", "must start with https://"),
        ("https://127.0.0.1/hook", "loopback"),
        ("https://localhost:8443/hook", "loopback"),
        ("https://[::1]/hook", "loopback"),
        ("https://[::ffff:127.0.0.1]/hook", "loopback"),
        ("https://10.1.2.3/hook", "private"),
        ("https://192.168.0.10/hook", "private"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://224.0.0.1/hook", "multicast"),
        ("https://0.0.0.0/hook", "unspecified"),
        ("https://100.64.0.1/hook", "non-public"),
        ("https://user:pw@93.184.215.14/hook", "user name or password"),
        ("https:///hook", "no host"),
        ("https://93.184.215.14:99999/hook", "could not be parsed"),
        ("https://93.184.215.14/a b", "spaces or control characters"),
        ("https://93.184.215.14/caf\u00e9", "must be ASCII"),
    ],
)
def test_unsafe_urls_are_refused_with_a_reason_but_never_the_url(url, why):
    with pytest.raises(webhooks.UnsafeURL) as info:
        webhooks.check_url(url, STRICT)
    message = str(info.value)
    assert why in message and "\n" not in message
    assert "93.184" not in message and "/hook" not in message


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/hook", "https://10.1.2.3/hook", "http://[::1]:9/hook"]
)
def test_allow_private_accepts_local_receivers(url):
    assert webhooks.check_url(url, PRIVATE_OK).address in ("127.0.0.1", "10.1.2.3", "::1")


def test_a_public_host_passes_and_one_private_address_among_its_addresses_fails():
    public = webhooks.check_url(
        "https://hooks.example.com/in?x=1", STRICT, resolver=lambda host, port: ["93.184.215.14"]
    )
    assert (public.host, public.port, public.path, public.address) == (
        "hooks.example.com", 443, "/in?x=1", "93.184.215.14"
    )  # fmt: skip
    with pytest.raises(webhooks.UnsafeURL, match="private"):
        webhooks.check_url(
            "https://hooks.example.com/in",
            STRICT,
            resolver=lambda host, port: ["93.184.215.14", "10.0.0.5"],
        )


def test_a_host_that_does_not_resolve_is_refused():
    def nxdomain(host, port):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(webhooks.UnsafeURL, match="does not resolve"):
        webhooks.check_url("https://hooks.example.com/in", STRICT, resolver=nxdomain)


def test_configure_sets_a_new_secret_refuses_bad_urls_and_removes():
    tenant = Tenant(name="acme")
    secret = webhooks.configure(tenant, " http://127.0.0.1:9/in ", PRIVATE_OK)
    assert (tenant.webhook_url, tenant.webhook_secret) == ("http://127.0.0.1:9/in", secret)
    with pytest.raises(ValueError, match="https"):
        webhooks.configure(tenant, "http://127.0.0.1:9/other", STRICT)
    assert tenant.webhook_secret == secret  # a refused URL changes nothing
    assert webhooks.configure(tenant, "http://127.0.0.1:9/new", PRIVATE_OK) == secret  # kept
    assert webhooks.configure(tenant, "http://127.0.0.1:9/in", PRIVATE_OK, rotate=True) != secret
    assert webhooks.configure(tenant, None, STRICT) is None
    assert (tenant.webhook_url, tenant.webhook_secret) == (None, None)


def test_a_url_refused_at_delivery_time_stops_its_events_unsent(factory, settings, receivers):
    """Checked again before each POST: here the rules tightened (DNS could change too)."""
    r = receivers()
    connect(factory, "acme", r)
    enrich(factory, settings, "acme", 1)

    deliver_due(factory, replace(CONFIG, allow_private=False))

    events = events_of(factory)
    assert {e.status for e in events} == {"stopped"} and r.requests == []
    assert {e.last_error for e in events} == {
        "webhook URL refused: the webhook URL must start with https:// "
        "(http:// needs ENRICHMENT_WEBHOOK_ALLOW_PRIVATE=1)"
    }
    assert all("127.0.0.1" not in e.last_error for e in events)
