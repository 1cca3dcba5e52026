"""The periodic schedule, as data. Intervals come from settings (seconds)."""

from __future__ import annotations

from enrichment.core.settings import Settings
from enrichment.metrics import cadence


def schedule(settings: Settings) -> dict:
    monitor_s = cadence.Pace.of(settings).tick_s
    deliver_s = settings.webhooks.interval_s
    return {
        "sweep": {
            "task": "enrichment.sweep",
            "schedule": settings.sweep_interval_s,
            # A run not started by the next tick is pointless: the next one covers it.
            "options": {"expires": settings.sweep_interval_s},
        },
        # Every tick (interval / ENRICHMENT_MONITOR_WARNING_DIVISOR); each run evaluates only
        # the tenants due: warned ones every tick, the others every interval (cadence.py).
        "monitor": {
            "task": "enrichment.monitor",
            "schedule": monitor_s,
            "options": {"expires": monitor_s},
        },
        "batches": {
            "task": "enrichment.batches",
            "schedule": settings.batches.interval_s,
            "options": {"expires": settings.batches.interval_s},
        },
        # Calibration maps and auto thresholds (reviews/refit.py): a run with nothing new reads
        # one grouped count.
        "calibrate": {
            "task": "enrichment.calibrate",
            "schedule": settings.reviews.refit_interval_s,
            "options": {"expires": settings.reviews.refit_interval_s},
        },
        # The backstop: events whose push was lost, or whose retry came due.
        "deliver": {
            "task": "enrichment.deliver",
            "schedule": deliver_s,
            "options": {"expires": deliver_s},
        },
        # History past retention, in short chunks (enrichment/history/pruner.py); on the
        # default queue: it can wait behind the stages, never the monitor or deliveries.
        "prune": {
            "task": "enrichment.prune",
            "schedule": settings.retention.prune_interval_s,
            "options": {"expires": settings.retention.prune_interval_s},
        },
        # PostgreSQL's time partitions of the history: made ahead, dropped whole past
        # retention (enrichment/history/partitions.py, retire.py); a no-op on SQLite.
        "partitions": {
            "task": "enrichment.partitions",
            "schedule": settings.retention.prune_interval_s,
            "options": {"expires": settings.retention.prune_interval_s},
        },
    }
