"""Whose fault a failure is, and the breaker's state machine: pure functions, no services."""

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from anthropic import APIConnectionError, APIStatusError, APITimeoutError

from enrichment.core import breaker
from enrichment.core.errors import (
    InvalidAIOutput,
    PermanentError,
    ProviderPaused,
    RateLimited,
    TransientError,
)
from enrichment.core.faults import Cause, is_fleet_fault, with_cause
from enrichment.core.settings_sections import BreakerConfig
from enrichment.providers.anthropic import map_api_error
from enrichment.providers.anthropic_batches import errored

NOW = datetime(2026, 12, 6, 2, 14, tzinfo=UTC)
CFG = BreakerConfig(min_calls=10, failure_ratio=0.5, probe_initial_s=15, probe_max_s=120)
REQUEST = httpx.Request("POST", "https://api.anthropic.com/v1/messages")


def status_error(status, kind, headers=None):
    response = httpx.Response(
        status, request=REQUEST, headers={"request-id": "req_123", **(headers or {})}
    )
    body = {"type": "error", "error": {"type": kind, "message": "m"}}
    return APIStatusError("m", response=response, body=body)


@pytest.mark.parametrize(
    ("status", "kind", "headers", "cause", "fleet", "permanent"),
    [
        (400, "invalid_request_error", {}, Cause.BAD_REQUEST, False, True),
        (413, "request_too_large", {}, Cause.TOO_LARGE, False, True),
        (401, "authentication_error", {}, Cause.AUTH, True, True),
        (403, "permission_error", {}, Cause.PERMISSION, True, True),
        (404, "not_found_error", {}, Cause.MODEL_NOT_FOUND, True, True),
        (402, "billing_error", {}, Cause.SPEND_CAP, True, True),
        (429, "rate_limit_error", {}, Cause.SPEND_CAP, True, True),
        (429, "rate_limit_error", {"retry-after": "3"}, Cause.RATE_LIMIT, True, False),
        (500, "api_error", {}, Cause.SERVER, True, False),
        (503, "api_error", {}, Cause.SERVER, True, False),
        (529, "overloaded_error", {}, Cause.OVERLOAD, True, False),
    ],
)
def test_every_status_has_its_cause_and_its_side(status, kind, headers, cause, fleet, permanent):
    error = map_api_error(status_error(status, kind, headers), "sk-key")

    assert error.cause == cause
    assert is_fleet_fault(error) is fleet
    assert isinstance(error, PermanentError) is permanent
    # The message is groupable: the request id stays on the error, for the attempt row.
    assert "req_123" not in str(error) and error.request_id == "req_123"


def test_timeouts_and_lost_connections_are_the_fleets():
    timeout = map_api_error(APITimeoutError(request=REQUEST), "k")
    refused = map_api_error(APIConnectionError(request=REQUEST), "k")

    assert (timeout.cause, refused.cause) == (Cause.TIMEOUT, Cause.CONNECTION)
    assert is_fleet_fault(timeout) and is_fleet_fault(refused)


def test_invalid_answers_and_unmarked_failures_are_the_records():
    assert not is_fleet_fault(with_cause(InvalidAIOutput("bad"), Cause.INVALID_OUTPUT))
    assert not is_fleet_fault(TransientError("a local fault, no cause"))
    # Our own rate limiter is neither: it has its own path that spends no retry.
    assert not is_fleet_fault(RateLimited(2.0))


def test_a_400_is_the_fleets_only_while_the_breaker_is_open_on_400s():
    error = with_cause(PermanentError("400"), Cause.BAD_REQUEST)

    assert not is_fleet_fault(error)
    assert is_fleet_fault(error, breaker_open_on=Cause.BAD_REQUEST)
    assert not is_fleet_fault(error, breaker_open_on=Cause.OVERLOAD)


class _Err:
    def __init__(self, kind):
        self.error = type("E", (), {"type": kind, "message": "m"})()


@pytest.mark.parametrize(
    ("kind", "fleet"),
    [("authentication_error", True), ("overloaded_error", True), ("billing_error", True),
     ("api_error", True), ("invalid_request_error", False), ("request_too_large", False)],
)  # fmt: skip
def test_a_batch_requests_errored_result_has_the_same_sides(kind, fleet):
    assert is_fleet_fault(errored(_Err(kind))) is fleet


def test_a_paused_stage_names_the_breakers_cause():
    assert "auth" in str(ProviderPaused("auth"))


# The breaker's state machine


def closed():
    return breaker.Breaker("anthropic", "claude-haiku-5-5")


@pytest.mark.parametrize("cause", ["auth", "permission", "model_not_found", "spend_cap"])
def test_a_hard_fault_opens_the_breaker_at_once(cause):
    b = breaker.on_fault(closed(), cause, faults=1, calls=1, now=NOW, cfg=CFG)

    assert (b.state, b.cause, b.opened_at) == (breaker.OPEN, cause, NOW)
    assert b.probe_at == NOW + timedelta(seconds=15)
    assert not breaker.admits(b, 7)


def test_a_soft_fault_opens_only_past_the_ratio_over_the_minimum_volume():
    few = breaker.on_fault(closed(), "overload", faults=9, calls=9, now=NOW, cfg=CFG)
    low_ratio = breaker.on_fault(closed(), "overload", faults=4, calls=10, now=NOW, cfg=CFG)
    tripped = breaker.on_fault(closed(), "overload", faults=5, calls=10, now=NOW, cfg=CFG)

    assert few.is_closed and low_ratio.is_closed
    assert tripped.state == breaker.OPEN


def test_one_probe_per_interval_and_it_alone_may_call():
    b = breaker.on_fault(closed(), "auth", faults=1, calls=1, now=NOW, cfg=CFG)

    assert breaker.take_probe(b, 7, NOW + timedelta(seconds=14)) is None
    probing = breaker.take_probe(b, 7, NOW + timedelta(seconds=15))
    assert probing.state == breaker.HALF_OPEN
    assert breaker.admits(probing, 7) and not breaker.admits(probing, 8)
    # A second sweep before the probe's interval is out takes no second probe.
    assert breaker.take_probe(probing, 8, NOW + timedelta(seconds=20)) is None
    # A probe that never answered is lost at its interval's end: another may go.
    assert breaker.take_probe(probing, 8, NOW + timedelta(seconds=31)).probe_record_id == 8


def test_a_failed_probe_doubles_the_interval_up_to_the_cap():
    b = breaker.on_fault(closed(), "overload", faults=10, calls=10, now=NOW, cfg=CFG)
    intervals = []
    for i in range(6):
        b = breaker.take_probe(b, i, b.probe_at)
        b = breaker.on_fault(b, "overload", faults=1, calls=1, now=b.probe_at, cfg=CFG)
        intervals.append(b.probe_interval_s)

    assert intervals == [30, 60, 120, 120, 120, 120]
    assert b.opened_at == NOW  # still the outage that began at NOW


def test_the_probes_success_closes_and_the_claim_ramps_back_up():
    b = breaker.on_fault(closed(), "auth", faults=1, calls=1, now=NOW, cfg=CFG)
    assert breaker.on_success(b, NOW) == b  # an open breaker closes only through its probe
    b = breaker.on_success(breaker.take_probe(b, 7, b.probe_at), NOW)

    assert b.is_closed and b.cause is None and b.closed_at == NOW
    limits = [breaker.ramp_limit(b, NOW + timedelta(seconds=s), 60, 100) for s in (0, 61, 130)]
    assert limits == [100, 200, 400]
    assert breaker.ramp_limit(b, NOW + timedelta(hours=1), 60, 100) is None
