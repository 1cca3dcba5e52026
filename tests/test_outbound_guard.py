"""The guarded sender (core/outbound.py) for tenant webhooks, Slack and PagerDuty: the
addresses it refuses (IPv4 wrapped in 6to4, Teredo, NAT64, mapped and compatible IPv6;
192.0.0.0/24 whatever the interpreter says), at configuration time and at send time, and no
redirect followed. DNS answers come from a patched `socket.getaddrinfo` for names under
.test only; every receiver is a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from dataclasses import replace

import pytest
import structlog

from enrichment.alerting import pagerduty, push, slack
from enrichment.alerting.dispatch import run_alerts
from enrichment.core import outbound
from enrichment.core.models import Tenant
from enrichment.core.monitor_models import Alert
from enrichment.core.settings import AlertPolicy, ConfigurationError, Settings, WebhookConfig
from enrichment.core.settings_sections import PagerDutyConfig
from enrichment.core.tenant_settings import TenantSettings, TenantSettingsError
from enrichment.delivery import post, webhooks
from enrichment.metrics.monitor import run_monitor
from enrichment.tooling.processes import ROOT
from tests import test_slack
from tests.factories import make_record, make_tenant
from tests.test_slack import CONFIG as SLACK
from tests.test_slack import LOCAL, SECRET, Receiver

STRICT = WebhookConfig()
ROUTING_KEY = "CANARY-PD-0123456789abcdefghijk1"
receiver = test_slack.receiver  # the fixture, found by name
# Each wraps (or is) an address no POST may reach, with the reason given (or "|" between reasons).
WRAPPED = {
    "192.0.0.8": "non-public",  # 192.0.0.0/24: 3.11.7's tables call it global
    "192.0.0.9": "non-public",
    "2002:7f00:1::": "loopback (in 6to4)",  # 6to4 of 127.0.0.1
    "2002:a00:1::": "private (in 6to4)",  # 6to4 of 10.0.0.1
    "2002:c000:8::": "non-public (in 6to4)",  # 6to4 of 192.0.0.8
    # Teredo: server 65.54.227.120, client 127.0.0.1 (stored XORed: 80ff:fffe)
    "2001:0:4136:e378:8000:63bf:80ff:fffe": "loopback (in Teredo)",
    "2001:0:a00:1:8000:63bf:3fff:fdd2": "private (in Teredo)",  # server 10.0.0.1
    "64:ff9b::7f00:1": "loopback (in NAT64)",
    "64:ff9b::a9fe:a9fe": "link-local (in NAT64)",  # 169.254.169.254, the metadata service
    # local-use NAT64 (RFC 8215), wherever it leads: "reserved" in 3.11's tables (::/8)
    "64:ff9b:1::808:808": "reserved|non-public",
    "::ffff:127.0.0.1": "loopback (in IPv4-mapped)",
    "::ffff:192.0.0.8": "non-public (in IPv4-mapped)",
    "::127.0.0.1": "loopback (in IPv4-compatible)",
    "3fff::1": "non-public",  # documentation (RFC 9637): 3.11.7 calls it global
}


@pytest.fixture
def dns(monkeypatch):
    """`dns["name.test"] = [addresses]`: what the system resolver answers for that name."""
    answers: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in answers:
            return real(host, port, *args, **kwargs)
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (a, port)) for a in answers[host]]  # fmt: skip

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


# --- the address check (pure) -----------------------------------------------------------


@pytest.mark.parametrize(("address", "why"), WRAPPED.items())
def test_an_address_wrapping_or_being_a_non_public_one_is_refused(address, why):
    assert outbound.refused_reason(address) in why.split("|")


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:4700::1111", "2002:5db8:d70e::"])
def test_public_addresses_pass_and_so_does_6to4_of_a_public_one(address):
    assert outbound.refused_reason(address) is None


# --- configuration time -----------------------------------------------------------------


@pytest.mark.parametrize("address", WRAPPED)
def test_configuring_a_webhook_at_a_wrapped_address_is_refused(address):
    host = f"[{address}]" if ":" in address else address
    tenant = Tenant(name="acme")
    with pytest.raises(webhooks.UnsafeURL, match="address; use a public https endpoint"):
        webhooks.configure(tenant, f"https://{host}/hook", STRICT)
    assert tenant.webhook_url is None


def test_a_webhook_name_resolving_to_6to4_loopback_is_refused_when_configured(dns):
    dns["hooks.acme.test"] = ["93.184.215.14", "2002:7f00:1::"]
    with pytest.raises(webhooks.UnsafeURL, match=re.escape("loopback (in 6to4)")):
        webhooks.configure(Tenant(name="acme"), "https://hooks.acme.test/in", STRICT)


def test_the_cli_refuses_the_issues_two_urls_in_one_line_each(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENRICHMENT_", "SLACK_"))}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'cli.db'}", ENRICHMENT_VAR_DIR=str(tmp_path))
    cli = [sys.executable, "-m", "enrichment.cli"]
    for args in (["migrate"], ["tenant-add", "acme"]):
        subprocess.run([*cli, *args], cwd=ROOT, env=env, check=True, capture_output=True)
    for url, why in [("https://192.0.0.8/", "non-public"),
                     ("https://[2002:7f00:1::]/", "loopback (in 6to4)")]:  # fmt: skip
        done = subprocess.run([*cli, "webhook", "acme", url], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode != 0 and "Traceback" not in done.stderr
        assert why in done.stderr.strip().splitlines()[-1]


def test_a_tenants_slack_webhook_is_checked_when_written_and_its_form_when_read(dns):
    for url in ("https://192.0.0.8/services/x", "https://[64:ff9b::7f00:1]/services/x"):
        with pytest.raises(TenantSettingsError, match="'slack_webhook_url' is refused"):
            TenantSettings.validate({"slack_webhook_url": url})
    dns["hooks.slack.test"] = ["2001:0:4136:e378:8000:63bf:80ff:fffe"]
    with pytest.raises(TenantSettingsError, match=r"loopback \(in Teredo\)") as info:
        TenantSettings.validate({"slack_webhook_url": f"https://hooks.slack.test/{SECRET}"})
    assert SECRET not in str(info.value)
    local = "http://127.0.0.1:9/services/x"
    with pytest.raises(TenantSettingsError, match="must start with https://"):
        TenantSettings.validate({"slack_webhook_url": local})
    assert TenantSettings.validate({"slack_webhook_url": local}, allow_private=True)
    # A stored row of a bad form is logged (never its value) and not used.
    with structlog.testing.capture_logs() as logs:
        own = TenantSettings.parse({"slack_webhook_url": f"gopher://x/{SECRET}", "weight": 7})
    assert own.slack_webhook_url is None and SECRET not in str(logs)


# --- send time: webhooks ------------------------------------------------------------------


# 6to4, NAT64, Teredo and IPv4-mapped IPv6 of 127.0.0.1, and 192.0.0.8.
AT_SEND = ["2002:7f00:1::", "64:ff9b::7f00:1", "2001:0:4136:e378:8000:63bf:80ff:fffe",
           "::ffff:127.0.0.1", "192.0.0.8"]  # fmt: skip


@pytest.mark.parametrize("address", AT_SEND)
def test_a_webhook_whose_dns_turns_to_a_wrapped_address_stops_unsent(dns, address):
    dns["hooks.acme.test"] = ["93.184.215.14"]
    tenant = Tenant(name="acme")
    secret = webhooks.configure(tenant, "https://hooks.acme.test/in", STRICT)
    dns["hooks.acme.test"] = [address]  # re-pointed after the check at configuration
    answer = post.send(tenant.webhook_url, secret, "msg_1", "{}", STRICT)
    assert answer.kind == post.STOP and answer.status is None
    assert "webhook URL refused" in answer.error and "hooks.acme.test" not in answer.error


# --- send time: Slack and PagerDuty -------------------------------------------------------


def test_slack_on_loopback_is_refused_unless_private_targets_are_allowed(receiver):
    sleeps: list[float] = []
    with pytest.raises(slack.SlackRejected, match="must start with https://"):
        slack.post(receiver.url, {"text": "x"}, SLACK, sleep=sleeps.append)
    https_loopback = receiver.url.replace("http://", "https://")
    with pytest.raises(slack.SlackRejected, match="resolves to a loopback address") as info:
        slack.post(https_loopback, {"text": "x"}, SLACK, sleep=sleeps.append)
    assert receiver.received == [] and sleeps == []  # refused, never retried
    assert SECRET not in str(info.value) and info.value.__context__ is None
    slack.post(receiver.url, {"text": "x"}, SLACK, allow_private=True, sleep=sleeps.append)
    assert receiver.received == [{"text": "x"}]


def test_pagerduty_on_loopback_is_refused_unless_private_targets_are_allowed(receiver):
    body = {"routing_key": ROUTING_KEY, "event_action": "trigger", "dedup_key": "k"}
    for url in (receiver.url, receiver.url.replace("http://", "https://")):
        with pytest.raises(push.PushRejected, match="URL refused"):
            pagerduty.send(body, PagerDutyConfig(url=url), sleep=[].append)
    assert receiver.received == []
    receiver.script = [(202, {}, '{"dedup_key": "k"}')]
    config = PagerDutyConfig(url=receiver.url)
    assert pagerduty.send(body, config, allow_private=True, sleep=[].append) == "k"
    assert receiver.received == [body]


@pytest.mark.parametrize("address", AT_SEND)
def test_slack_and_pagerduty_refuse_a_name_resolving_to_a_wrapped_address(dns, address):
    dns["hooks.slack.test"] = dns["events.pagerduty.test"] = [address]
    sleeps: list[float] = []
    with pytest.raises(slack.SlackRejected, match="URL refused"):
        slack.post(f"https://hooks.slack.test/{SECRET}", {"text": "x"}, SLACK, sleep=sleeps.append)
    config = PagerDutyConfig(url="https://events.pagerduty.test/v2/enqueue", max_attempts=3)
    body = {"routing_key": ROUTING_KEY, "event_action": "trigger", "dedup_key": "k"}
    with pytest.raises(push.PushRejected, match="URL refused") as info:
        pagerduty.send(body, config, sleep=sleeps.append)
    assert sleeps == [] and ROUTING_KEY not in str(info.value)


def test_a_name_that_does_not_resolve_is_retried_as_unavailable(dns):
    dns["hooks.slack.test"] = []
    sleeps: list[float] = []
    with pytest.raises(slack.SlackUnavailable, match="does not resolve"):
        slack.post("https://hooks.slack.test/x", {"text": "x"}, replace(SLACK, max_attempts=2),
                   sleep=sleeps.append)  # fmt: skip
    assert len(sleeps) == 1


def test_slack_and_pagerduty_never_follow_a_redirect(receiver):
    elsewhere = Receiver()
    try:
        receiver.script = [(302, {"Location": elsewhere.url}, "")] * 2
        with pytest.raises(slack.SlackRejected) as info:
            slack.post(receiver.url, {"text": "x"}, SLACK, allow_private=True, sleep=[].append)
        assert (info.value.status, info.value.error) == (302, "redirects are not followed")
        config = PagerDutyConfig(url=receiver.url, max_attempts=3)
        body = {"routing_key": ROUTING_KEY, "event_action": "trigger", "dedup_key": "k"}
        with pytest.raises(push.PushRejected, match="302: redirects are not followed"):
            pagerduty.send(body, config, allow_private=True, sleep=[].append)
        assert len(receiver.received) == 2 and elsewhere.received == []
    finally:
        elsewhere.server.shutdown()
        elsewhere.server.server_close()


def test_a_redirected_alert_is_a_failed_delivery_recorded_on_the_alert(factory, settings, receiver):
    elsewhere = Receiver()
    receiver.script = [(302, {"Location": elsewhere.url}, "")]
    with factory.begin() as s:
        tenant = make_tenant(s, "moved-3pl")
        tenant.settings = {"slack_webhook_url": receiver.url,
                           "alert_thresholds": {"backlog_critical": 2}}  # fmt: skip
        for _ in range(3):
            make_record(s, tenant)
    policy = AlertPolicy(for_evaluations=1, repeat_interval_s=3600, min_sample=1)
    alerting = replace(settings, alerts=policy, slack=SLACK, webhooks=LOCAL)
    try:
        [sent] = run_alerts(factory, run_monitor(factory, settings), alerting)
    finally:
        elsewhere.server.shutdown()
        elsewhere.server.server_close()
    assert "redirects are not followed" in sent.error
    assert len(receiver.received) == 1 and elsewhere.received == []
    with factory() as s:
        row = s.query(Alert).filter_by(metric="backlog").one()
        assert "302" in row.last_error and row.notifications_sent == 0


# --- start-up -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "why"),
    [
        ({"SLACK_WEBHOOK_URL": "http://127.0.0.1:9/services/x"}, "must start with https://"),
        ({"SLACK_WEBHOOK_URL": "https://localhost/services/x"}, "loopback"),
        ({"SLACK_WEBHOOK_URL": "https://192.0.0.8/services/x"}, "non-public"),
        ({"ENRICHMENT_PAGERDUTY_URL": "https://[2002:7f00:1::]/v2/enqueue"}, "(in 6to4)"),
        ({"ENRICHMENT_PAGERDUTY_URL": "https://[::ffff:a9fe:a9fe]/"}, "(in IPv4-mapped)"),
    ],
)
def test_a_refused_destination_in_the_environment_stops_start_up_in_one_line(monkeypatch, env, why):
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env()
    message = str(info.value)
    assert f"{next(iter(env))} is refused" in message and why in message
    assert "\n" not in message and "/services/x" not in message


def test_local_receivers_in_the_environment_start_when_private_targets_are_allowed(monkeypatch):
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "http://127.0.0.1:9/services/x")
    monkeypatch.setenv("ENRICHMENT_PAGERDUTY_URL", "http://127.0.0.1:9/v2/enqueue")
    monkeypatch.setenv("ENRICHMENT_WEBHOOK_ALLOW_PRIVATE", "1")
    assert Settings.from_env().slack.webhook_url == "http://127.0.0.1:9/services/x"
    monkeypatch.setenv("ENRICHMENT_WEBHOOK_ALLOW_PRIVATE", "0")
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/x")
    monkeypatch.delenv("ENRICHMENT_PAGERDUTY_URL")
    assert Settings.from_env().routing.pagerduty.url.startswith("https://events.pagerduty.com/")
