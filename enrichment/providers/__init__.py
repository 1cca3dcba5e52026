"""AI providers behind one small interface, chosen by configuration."""

from __future__ import annotations

from enrichment.providers.base import Provider, RecordContext, StageCall, Usage
from enrichment.settings import Settings

__all__ = ["Provider", "RecordContext", "StageCall", "Usage", "make_provider"]


def make_provider(settings: Settings) -> Provider:
    """The configured provider; created once per worker process."""
    if settings.ai_provider == "anthropic":
        from enrichment.providers.anthropic import AnthropicProvider

        return AnthropicProvider.from_settings(settings)
    from enrichment.providers.local import LocalProvider

    return LocalProvider(fault_rate=settings.local_fault_rate)
