"""AI providers behind one small interface, chosen by configuration."""

from __future__ import annotations

from importlib import import_module

from enrichment.core.provider import Provider, RecordContext, StageCall, Usage
from enrichment.core.settings import Settings

__all__ = ["Provider", "RecordContext", "StageCall", "Usage", "make_provider"]


_MODULES = {"anthropic": "enrichment.providers.anthropic", "local": "enrichment.providers.local"}


def preload(settings: Settings) -> None:
    """Import the configured provider's module (the SDK takes seconds of CPU to import) once,
    in the worker's parent process, so forked pool children don't each pay for it."""
    import_module(_MODULES[settings.ai_provider])


def make_provider(settings: Settings) -> Provider:
    """The configured provider; created once per worker process."""
    if settings.ai_provider == "anthropic":
        from enrichment.providers.anthropic import AnthropicProvider

        return AnthropicProvider.from_settings(settings)
    from enrichment.providers.local import LocalProvider

    return LocalProvider(fault_rate=settings.local_fault_rate)
