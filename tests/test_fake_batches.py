"""The fake's Message Batches API, driven through the real SDK (anthropic.Anthropic with
base_url): lifecycle, results of every kind, the API's checks, determinism, and what the
drill counts. Time moves on an injected clock, so no test sleeps.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import anthropic
import pytest

from enrichment.providers.anthropic import tool_definitions
from enrichment.tooling.drill.faults import CountingFake
from enrichment.tooling.fake_anthropic import MIX_SHARES, FakeAnthropic

KEY = "sk-ant-test-fake-batches"
TOOLS = tool_definitions()


class Clock:
    """A clock a test moves by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 1_767_225_600.0  # 2026-01-01T00:00:00Z

    def __call__(self) -> float:
        return self.now


def _params(text: str = "parcel crushed", tool: str = "record_classification") -> dict:
    return {
        "model": "claude-sonnet-4-6",
        "max_tokens": 256,
        "tools": TOOLS,
        "tool_choice": {"type": "tool", "name": tool},
        "messages": [{"role": "user", "content": f"<customer_data>{text}</customer_data>"}],
    }


def _requests(n: int, prefix: str = "r") -> list[dict]:
    return [
        {"custom_id": f"{prefix}{i}", "params": _params(f"record {i} crushed")} for i in range(n)
    ]


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def fake(clock):
    with FakeAnthropic(clock=clock, batch_delay_s=30.0, seed=1, api_key=KEY) as server:
        yield server


def _client(fake: FakeAnthropic, **kw) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=KEY, base_url=fake.base_url, max_retries=0, **kw)


def _results(client: anthropic.Anthropic, batch_id: str) -> dict:
    return {line.custom_id: line.result for line in client.messages.batches.results(batch_id)}


def test_create_is_in_progress_until_the_delay_then_ended_with_counts(fake, clock):
    client = _client(fake)

    batch = client.messages.batches.create(requests=_requests(3))

    assert batch.id.startswith("msgbatch_") and batch.type == "message_batch"
    assert (batch.processing_status, batch.results_url, batch.ended_at) == (
        "in_progress",
        None,
        None,
    )
    assert batch.request_counts.processing == 3 and batch.request_counts.succeeded == 0
    assert (batch.expires_at - batch.created_at).total_seconds() == 24 * 3600
    assert batch.created_at.timestamp() == clock.now
    clock.now += 29.9
    assert client.messages.batches.retrieve(batch.id).processing_status == "in_progress"

    clock.now += 0.1
    ended = client.messages.batches.retrieve(batch.id)

    assert ended.processing_status == "ended"
    assert ended.request_counts.model_dump() == {
        "processing": 0, "succeeded": 3, "errored": 0, "canceled": 0, "expired": 0,
    }  # fmt: skip
    assert (ended.ended_at - ended.created_at).total_seconds() == 30
    assert ended.results_url.endswith(f"/v1/messages/batches/{batch.id}/results")
    results = _results(client, batch.id)
    assert sorted(results) == ["r0", "r1", "r2"]
    message = results["r0"].message
    assert message.content[0].name == "record_classification"
    assert message.content[0].input["label"] == "DAMAGED_PACKAGE"
    assert message.usage.service_tier == "batch"


def test_a_batch_ends_on_the_real_clock_too():
    with FakeAnthropic(batch_delay_s=0.2) as fake:
        client = _client(fake)
        batch = client.messages.batches.create(requests=_requests(1))
        deadline = time.monotonic() + 10
        while batch.processing_status != "ended" and time.monotonic() < deadline:
            batch = client.messages.batches.retrieve(batch.id)
    assert batch.processing_status == "ended" and batch.request_counts.succeeded == 1


def test_results_mix_succeeded_errored_expired_and_canceled(fake, clock):
    client = _client(fake)
    fake.script(["ok", {"status": 500, "type": "api_error", "message": "boom"}, "malformed", "529"])
    mixed = client.messages.batches.create(requests=_requests(4, "m"))
    fake.expire_next_batches(1)
    expired = client.messages.batches.create(requests=_requests(2, "e"))
    canceled = client.messages.batches.create(requests=_requests(2, "c"))

    canceling = client.messages.batches.cancel(canceled.id)
    clock.now += 30

    assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at
    m = _results(client, mixed.id)
    assert [m[k].type for k in ("m0", "m1", "m2", "m3")] == [
        "succeeded", "errored", "succeeded", "errored",
    ]  # fmt: skip
    assert (m["m1"].error.type, m["m1"].error.error.type) == ("error", "api_error")
    assert m["m1"].error.error.message == "boom"
    assert m["m3"].error.error.type == "overloaded_error"
    assert isinstance(m["m2"].message.content[0].input, str)  # malformed: bent, yet succeeded
    assert {r.type for r in _results(client, expired.id).values()} == {"expired"}
    assert {r.type for r in _results(client, canceled.id).values()} == {"canceled"}
    counts = {b: client.messages.batches.retrieve(b).request_counts for b in fake.batches}
    assert (counts[mixed.id].succeeded, counts[mixed.id].errored) == (2, 2)
    assert (counts[expired.id].expired, counts[canceled.id].canceled) == (2, 2)


def test_a_timeout_fault_in_a_batch_answers_normally(clock):
    with FakeAnthropic(clock=clock, batch_delay_s=0.0, faults="timeout=1") as fake:
        client = _client(fake, timeout=5.0)
        batch = client.messages.batches.create(requests=_requests(2))
        results = _results(client, batch.id)
    assert {r.type for r in results.values()} == {"succeeded"}


def test_list_pages_newest_first_with_the_sdk_cursor(fake):
    client = _client(fake)
    made = [client.messages.batches.create(requests=_requests(1)).id for _ in range(5)]

    page = client.messages.batches.list(limit=2)
    everything = [b.id for b in client.messages.batches.list(limit=2)]
    older = client.messages.batches.list(limit=2, after_id=made[3])
    newer = client.messages.batches.list(limit=2, before_id=made[1])

    assert [b.id for b in page.data] == [made[4], made[3]] and page.has_more
    assert (page.first_id, page.last_id) == (made[4], made[3])
    assert everything == made[::-1]
    assert [b.id for b in older.data] == [made[2], made[1]] and older.has_more
    assert [b.id for b in newer.data] == [made[3], made[2]] and newer.has_more


def test_cancel_and_delete_follow_the_api_rules(fake, clock):
    client = _client(fake)
    batch = client.messages.batches.create(requests=_requests(2))

    with pytest.raises(anthropic.BadRequestError, match="only an ended batch can be deleted"):
        client.messages.batches.delete(batch.id)
    client.messages.batches.cancel(batch.id)
    clock.now += 30
    ended = client.messages.batches.retrieve(batch.id)
    with pytest.raises(anthropic.BadRequestError, match="already ended"):
        client.messages.batches.cancel(batch.id)
    deleted = client.messages.batches.delete(batch.id)

    assert ended.processing_status == "ended" and ended.request_counts.canceled == 2
    assert (deleted.id, deleted.type) == (batch.id, "message_batch_deleted")
    assert batch.id not in fake.batches
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(batch.id)


def test_unknown_batch_is_404_and_a_wrong_key_401(fake):
    with pytest.raises(anthropic.NotFoundError) as raised:
        _client(fake).messages.batches.retrieve("msgbatch_nope")
    assert raised.value.body["error"]["type"] == "not_found_error"
    wrong = anthropic.Anthropic(api_key="sk-wrong", base_url=fake.base_url, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        wrong.messages.batches.list()
    with pytest.raises(anthropic.AuthenticationError):
        wrong.messages.batches.create(requests=_requests(1))
    assert fake.batches == {}


@pytest.mark.parametrize(
    ("requests", "message"),
    [
        ([], "requests: 1 to 100,000 per batch, got 0"),
        ([{"custom_id": "has space", "params": _params()}], r"requests.0.custom_id: 'has space'"),
        ([{"custom_id": "x" * 65, "params": _params()}], "must match"),
        ([{"custom_id": "", "params": _params()}], "must match"),
        (_requests(2) + [{"custom_id": "r1", "params": _params()}], "requests.2.custom_id: 'r1'"),
        ([{"custom_id": "a", "params": {"model": "m", "messages": []}}], "params.max_tokens"),
        ([{"custom_id": "a", "params": {**_params(), "stream": True}}], "cannot stream"),
        ([{"custom_id": "a"}], "requests.0: needs custom_id and params"),
    ],
)
def test_bad_batches_are_a_400_that_says_what_is_wrong(fake, requests, message):
    with pytest.raises(anthropic.BadRequestError, match=message) as raised:
        _client(fake).messages.batches.create(requests=requests)
    assert raised.value.body["error"]["type"] == "invalid_request_error"
    assert fake.batches == {}


def _post(fake: FakeAnthropic, path: str, data: bytes) -> urllib.error.HTTPError:
    req = urllib.request.Request(
        f"{fake.base_url}{path}", data=data, method="POST", headers={"x-api-key": KEY}
    )
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(req, timeout=30)
    return raised.value


def test_more_than_100000_requests_is_refused(fake):
    tiny = {"model": "m", "max_tokens": 1, "messages": []}
    body = {"requests": [{"custom_id": f"r{i}", "params": tiny} for i in range(100_001)]}

    error = _post(fake, "/v1/messages/batches", json.dumps(body).encode())

    assert error.code == 400
    assert json.loads(error.read())["error"]["message"] == (
        "requests: 1 to 100,000 per batch, got 100,001"
    )


def test_a_body_over_the_size_limit_is_413(clock):
    with FakeAnthropic(clock=clock, batch_max_bytes=4_000) as fake:
        with pytest.raises(anthropic.APIStatusError) as raised:
            _client(fake).messages.batches.create(requests=_requests(1))  # ~11 kB
        small = _client(fake).messages.batches.create(
            requests=[{"custom_id": "a", "params": {"model": "m", "max_tokens": 1, "messages": []}}]
        )
    assert raised.value.status_code == 413
    assert raised.value.body["error"]["type"] == "request_too_large"
    assert small.request_counts.processing == 1


def test_results_are_jsonl_without_a_blank_line(fake, clock):
    client = _client(fake)
    batch = client.messages.batches.create(requests=_requests(3))
    clock.now += 30
    url = client.messages.batches.retrieve(batch.id).results_url

    with urllib.request.urlopen(urllib.request.Request(url, headers={"x-api-key": KEY})) as r:
        content_type, raw = r.headers["content-type"], r.read()

    assert content_type == "application/x-jsonl"
    lines = raw.split(b"\n")
    assert lines[-1] == b"" and all(lines[:-1]) and len(lines) == 4
    assert [json.loads(line)["custom_id"] for line in lines[:-1]] == ["r0", "r1", "r2"]


def test_results_before_the_end_are_refused(fake):
    batch = _client(fake).messages.batches.create(requests=_requests(1))
    req = urllib.request.Request(
        f"{fake.base_url}/v1/messages/batches/{batch.id}/results", headers={"x-api-key": KEY}
    )
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(req, timeout=5)
    assert raised.value.code == 400


def _interactive_outcomes(params: list[dict]) -> list[tuple]:
    with FakeAnthropic(faults="mix=0.6", seed=11) as fake:
        client = _client(fake)
        outcomes = []
        for p in params:
            try:
                m = client.messages.create(**p)
                outcomes.append(("succeeded", m.content[0].input))
            except anthropic.APIStatusError as exc:
                outcomes.append(("errored", exc.body["error"]["type"]))
    return outcomes


def _batch_outcomes(params: list[dict]) -> list[tuple]:
    with FakeAnthropic(faults="mix=0.6", seed=11, batch_delay_s=0.0) as fake:
        client = _client(fake)
        requests = [{"custom_id": f"r{i}", "params": p} for i, p in enumerate(params)]
        results = _results(client, client.messages.batches.create(requests=requests).id)
    return [
        ("succeeded", r.message.content[0].input) if r.type == "succeeded"
        else ("errored", r.error.error.type)
        for r in (results[f"r{i}"] for i in range(len(params)))
    ]  # fmt: skip


def test_a_batched_request_is_answered_as_the_same_request_sent_alone(monkeypatch):
    monkeypatch.setitem(MIX_SHARES, "timeout", 0.0)  # the interactive side must not hang
    params = [_params(f"record {i}: box crushed, then lost") for i in range(30)]

    batched, alone = _batch_outcomes(params), _interactive_outcomes(params)

    assert batched == alone == _batch_outcomes(params)
    assert 5 <= sum(kind == "errored" for kind, _ in batched) <= 25


def test_expiry_rate_is_drawn_per_batch_deterministically(clock):
    def expired_pattern(seed: int) -> list[bool]:
        with FakeAnthropic(clock=clock, batch_expire_rate=0.5, seed=seed) as fake:
            client = _client(fake)
            for i in range(16):
                client.messages.batches.create(requests=_requests(1, f"b{i}x"))
            return [b.expired for b in fake.batches.values()]

    first = expired_pattern(3)

    assert first == expired_pattern(3) != expired_pattern(4)
    assert 2 <= sum(first) <= 14


def test_batch_calls_are_recorded_and_the_drill_counts_each_record_once(clock):
    with CountingFake(clock=clock, batch_delay_s=1.0) as fake:
        client = _client(fake)
        batch = client.messages.batches.create(requests=_requests(3))
        for _ in range(4):
            client.messages.batches.retrieve(batch.id)
        clock.now += 1
        list(client.messages.batches.results(batch.id))

    assert sorted(fake.per_record.values()) == [1, 1, 1]  # polls and results count for none
    assert fake.kinds == {"ok": 3}
    with FakeAnthropic(clock=clock) as plain:
        client = _client(plain)
        batch = client.messages.batches.create(requests=_requests(2))
        client.messages.batches.retrieve(batch.id)
    assert [(r["method"], r["path"]) for r in plain.requests] == [
        ("POST", "/v1/messages/batches"),
        ("GET", f"/v1/messages/batches/{batch.id}"),
    ]
    assert [r["custom_id"] for r in plain.batches[batch.id].requests] == ["r0", "r1"]


def _cached_params(model: str, prefix_tokens: int, text: str) -> dict:
    marker = {"type": "ephemeral"}
    system = [{"type": "text", "text": "s" * (4 * prefix_tokens), "cache_control": marker}]
    params = {k: v for k, v in _params(text).items() if k not in ("tools", "tool_choice")}
    return {**params, "model": model, "system": system}


def test_batched_requests_use_the_prompt_cache_as_interactive_ones_do(fake, clock):
    client = _client(fake)
    requests = [
        {"custom_id": f"s{i}", "params": _cached_params("claude-sonnet-4-6", 1100, f"t{i}")}
        for i in range(3)
    ] + [{"custom_id": "h0", "params": _cached_params("claude-haiku-4-5", 1100, "t")}]

    batch = client.messages.batches.create(requests=requests)
    clock.now += 30
    usage = {k: r.message.usage for k, r in _results(client, batch.id).items()}
    after = client.messages.create(**_cached_params("claude-sonnet-4-6", 1100, "later")).usage

    assert usage["s0"].cache_creation_input_tokens == 1100
    assert [usage[k].cache_read_input_tokens for k in ("s1", "s2")] == [1100, 1100]
    assert usage["h0"].cache_creation_input_tokens == usage["h0"].cache_read_input_tokens == 0
    assert after.cache_read_input_tokens == 1100 and after.service_tier == "standard"
