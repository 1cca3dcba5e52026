"""The periodic schedule, as data. Intervals come from settings (seconds)."""

from __future__ import annotations

from enrichment.settings import Settings


def schedule(settings: Settings) -> dict:
    return {
        "sweep": {
            "task": "enrichment.sweep",
            "schedule": settings.sweep_interval_s,
            # A sweep not started by the next tick is pointless: the next one covers it.
            "options": {"expires": settings.sweep_interval_s},
        },
    }
