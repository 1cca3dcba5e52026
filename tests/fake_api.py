"""The fake Anthropic server and the anthropic settings and provider pointed at it: the
fixtures the batch, breaker and crash-point tests share (take them by assignment, as
`fake = fake_api.fake`, so pytest finds them by name)."""

from __future__ import annotations

import pytest

from enrichment.providers.anthropic import AnthropicProvider
from enrichment.tooling.fake_anthropic import FakeAnthropic
from tests.conftest import with_settings

KEY = "sk-ant-test-fake-SECRET"


@pytest.fixture
def fake():
    with FakeAnthropic(api_key=KEY, batch_delay_s=0.0) as server:
        yield server


@pytest.fixture
def batch_settings(settings, fake):
    """The test settings on the anthropic provider at the fake, with no SDK retries."""
    return with_settings(
        settings,
        ai_provider="anthropic",
        anthropic_api_key=KEY,
        anthropic_base_url=fake.base_url,
        anthropic_max_retries=0,
    )


@pytest.fixture
def provider(batch_settings):
    p = AnthropicProvider(batch_settings)
    yield p
    p.close()
