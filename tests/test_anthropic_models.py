"""The Anthropic provider's model choice, prices, per-label resolve tools and cached prefix.

Given the installed SDK, the price table and the prompt files, when the provider starts or
builds a request, then the default model is current and priced, a deprecated or unusable
model is flagged at start-up, every request carries one identical prefix long enough to be
cached, and each label's resolve tool offers only that label's allowed actions.
"""

from __future__ import annotations

import json
import re
import typing

import pytest
import structlog
from anthropic._data import DEPRECATED_MODELS
from anthropic.types import Model

from enrichment.core.errors import InvalidAIOutput
from enrichment.core.settings import ConfigurationError, Settings
from enrichment.core.taxonomy import ALLOWED_ACTIONS, Action, Label
from enrichment.providers.anthropic import AnthropicProvider, prefix_tokens
from enrichment.providers.pricing import (
    CACHE_MIN_TOKENS,
    UnknownModelPrice,
    cache_min_tokens,
    cost_usd,
    price_for,
)
from enrichment.providers.prompts import load, redact
from enrichment.tooling.fake_anthropic import FakeAnthropic
from tests.test_anthropic_provider import KEY, _classified, _ctx, _provider

DEFAULT = Settings()
SDK_MODELS = set(typing.get_args(typing.get_args(Model)[0]))


@pytest.fixture
def fake():
    with FakeAnthropic(retry_after_s=0.01, hang_s=2.0, api_key=KEY) as server:
        yield server


def _offline(**changes) -> AnthropicProvider:
    """A provider that is only asked to build requests (nothing listens on port 9)."""
    options = {"anthropic_api_key": KEY, "anthropic_base_url": "http://127.0.0.1:9"}
    return AnthropicProvider(Settings(**{**options, **changes}))


# --- models and prices -------------------------------------------------------------------


def test_the_default_model_is_current_priced_and_not_deprecated():
    assert DEFAULT.anthropic_model == "claude-haiku-5-5"
    assert DEFAULT.anthropic_model in SDK_MODELS
    assert DEFAULT.anthropic_model not in DEPRECATED_MODELS
    assert price_for(DEFAULT.anthropic_model).input_usd_per_mtok == 0.10


def test_haiku_5_5_costs_five_times_more_past_100k_prompt_tokens():
    short = cost_usd("claude-haiku-5-5", input_tokens=100_000, output_tokens=1_000_000)
    long = cost_usd("claude-haiku-5-5", input_tokens=100_001, output_tokens=1_000_000)

    assert short == pytest.approx(0.01 + 0.50)
    assert long == pytest.approx(100_001 * 0.50 / 1e6 + 2.50)


def test_cached_tokens_count_toward_the_long_context_threshold_and_batches_halve_it():
    kw = {"input_tokens": 1_000, "output_tokens": 0, "cache_read_tokens": 100_000}
    cost = cost_usd("claude-haiku-5-5", **kw)

    assert cost == pytest.approx((1_000 + 100_000 * 0.1) * 0.50 / 1e6)
    assert cost_usd("claude-haiku-5-5", **kw, batch=True) == pytest.approx(cost / 2)


def test_a_newer_model_is_not_priced_by_an_older_family_prefix():
    assert price_for("claude-opus-4-8").output_usd_per_mtok == 25.0
    for retired in ("claude-sonnet-4-20250514", "claude-opus-4-20250514", "claude-3-5-haiku"):
        with pytest.raises(UnknownModelPrice, match="pricing.py"):
            price_for(retired)


def test_unknown_model_fails_at_start_up():
    with pytest.raises(ConfigurationError, match="pricing"):
        _offline(anthropic_model="claude-unknown-9")


def test_a_model_that_refuses_forced_tools_fails_at_start_up():
    with pytest.raises(ConfigurationError, match="forced tool use"):
        _offline(anthropic_model="claude-opus-5-5")


def test_a_deprecated_model_logs_a_warning_with_the_sdks_date():
    with structlog.testing.capture_logs() as logs:
        _offline(anthropic_model="claude-opus-4-5").close()

    (warning,) = [e for e in logs if e["event"] == "anthropic.model_deprecated"]
    assert warning["log_level"] == "warning"
    assert (warning["model"], warning["end_of_life"]) == (
        "claude-opus-4-5",
        DEPRECATED_MODELS["claude-opus-4-5"],
    )


def test_the_default_model_logs_no_warning():
    with structlog.testing.capture_logs() as logs:
        _offline().close()
    assert [e for e in logs if e["log_level"] == "warning"] == []


def test_anthropic_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("ENRICHMENT_ANTHROPIC_MODEL", "claude-sonnet-4-6")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("ENRICHMENT_ANTHROPIC_MAX_RETRIES", "4")
    config = Settings.from_env()
    assert (config.anthropic_model, config.anthropic_base_url, config.anthropic_max_retries) == (
        "claude-sonnet-4-6",
        "http://127.0.0.1:1",
        4,
    )
    monkeypatch.setenv("ENRICHMENT_ANTHROPIC_MAX_RETRIES", "many")
    with pytest.raises(ConfigurationError, match="ENRICHMENT_ANTHROPIC_MAX_RETRIES"):
        Settings.from_env()


# --- one resolve tool per label, one prefix for every request ------------------------------


def _forced(body: dict) -> dict:
    return next(t for t in body["tools"] if t["name"] == body["tool_choice"]["name"])


@pytest.mark.parametrize("label", list(Label))
def test_each_labels_resolve_tool_offers_only_its_allowed_actions(label):
    body = _offline().request("resolve", _classified(label))

    actions = _forced(body)["input_schema"]["properties"]["actions"]
    assert body["tool_choice"]["name"] == f"record_resolution_{label.lower()}"
    assert set(actions["items"].get("enum", [])) == {str(a) for a in ALLOWED_ACTIONS[label]}
    assert actions["maxItems"] == min(5, len(ALLOWED_ACTIONS[label]))


def test_every_stage_and_label_sends_the_same_prefix():
    provider = _offline()
    bodies = [provider.request("analyze", _ctx()), provider.request("classify", _ctx())]
    bodies += [provider.request("resolve", _classified(label)) for label in Label]

    prefixes = {json.dumps([b["tools"], b["system"]]) for b in bodies}
    assert len(prefixes) == 1
    assert len({b["tool_choice"]["name"] for b in bodies}) == 2 + len(Label)


def test_the_prefix_reaches_the_default_models_cache_minimum_with_margin():
    body = _offline().request("classify", _ctx())

    tokens = (len(json.dumps(body["tools"])) + len(json.dumps(body["system"]))) / 4
    minimum = cache_min_tokens(DEFAULT.anthropic_model)
    assert tokens >= 1.1 * minimum
    assert tokens >= 1.1 * max(CACHE_MIN_TOKENS.values())  # cached on every priced model
    assert prefix_tokens(body) == pytest.approx(tokens, abs=1)
    assert body["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in json.dumps(body["tools"]) + json.dumps(body["messages"])


def test_v1_still_loads_and_is_flagged_as_too_short_to_cache():
    with structlog.testing.capture_logs() as logs:
        provider = _offline(prompt_version="v1")
    body = provider.request("classify", _ctx())

    assert body["system"][0]["text"] == load("v1").system
    (warning,) = [e for e in logs if e["event"] == "anthropic.prefix_not_cached"]
    assert warning["prefix_tokens"] == prefix_tokens(body) < warning["min_cacheable_tokens"]


def test_a_schema_following_model_records_only_allowed_actions(fake):
    provider = _provider(fake)
    for label in Label:
        resolution = provider.resolve(_classified(label)).result
        assert set(resolution.actions) <= ALLOWED_ACTIONS[label]
        assert resolution.automatable == bool(ALLOWED_ACTIONS[label])


@pytest.mark.parametrize("label", [Label.PICK_DELAY, Label.OTHER])
def test_a_model_that_ignores_the_schema_is_refused_by_the_allow_list(fake, label):
    fake.script(["bad_action"])
    with pytest.raises(InvalidAIOutput, match=f"not allowed for {label}"):
        _provider(fake).resolve(_classified(label))


def test_no_tool_call_is_invalid(fake, monkeypatch):
    provider = _provider(fake)
    plain = {
        "model": provider.model,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
    }
    monkeypatch.setattr(provider, "request", lambda *a: plain)
    with pytest.raises(InvalidAIOutput, match="no record_classification tool call"):
        provider.classify(_ctx())


# --- the v2 prompt's content ---------------------------------------------------------------

_EXAMPLE = re.compile(
    r"Classification: (?P<label>[A-Z_]+), confidence (?P<confidence>[0-9.]+)\."
    r"(?:(?!\nExample).)*?\nResolution: (?P<actions>[A-Za-z_, ]+?) "
    r"\((?P<kind>automatable|needs a person)\)",
    re.S,
)


def test_every_worked_example_follows_the_taxonomy_and_the_allow_list():
    system = load("v2").system
    examples = list(_EXAMPLE.finditer(system))

    assert len(examples) == system.count("\nExample ")  # the pattern read every example
    assert {Label(m["label"]) for m in examples} == set(Label)  # every label has one
    for m in examples:
        label, actions = Label(m["label"]), m["actions"].split(", ")
        assert 0.0 <= float(m["confidence"]) <= 1.0
        if m["kind"] == "needs a person":
            assert actions == ["none"] and not ALLOWED_ACTIONS[label]
        else:
            assert {Action(a) for a in actions} <= ALLOWED_ACTIONS[label], m.group()


def test_the_v2_guidance_says_when_to_choose_every_action():
    guidance = load("v2").system.split("When to choose each action:")[1]
    for action in Action:
        assert f"- {action}:" in guidance


def test_redact_keeps_dates_amounts_and_ids():
    text = "on 2026-11-20 paid 12.50 for order 5234567890123, call (555) 123-4567"
    assert redact(text) == "on 2026-11-20 paid 12.50 for order 5234567890123, call [PHONE]"
