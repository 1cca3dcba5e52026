"""The periodic schedule, as data. Intervals come from settings (seconds)."""

from __future__ import annotations

from enrichment.core.settings import Settings
from enrichment.metrics import cadence


def every(task: str, seconds: float) -> dict:
    """`task` every `seconds`; a run not started by the next tick is pointless (the next one
    covers it), so it expires then."""
    return {"task": task, "schedule": seconds, "options": {"expires": seconds}}


def schedule(settings: Settings) -> dict:
    prune_s = settings.retention.prune_interval_s
    return {
        "sweep": every("enrichment.sweep", settings.sweep_interval_s),
        # Every tick (interval / ENRICHMENT_MONITOR_WARNING_DIVISOR); each run evaluates only
        # the tenants due: warned ones every tick, the others every interval (cadence.py).
        "monitor": every("enrichment.monitor", cadence.Pace.of(settings).tick_s),
        "batches": every("enrichment.batches", settings.batches.interval_s),
        # Calibration maps and auto thresholds (reviews/refit.py): a run with nothing new reads
        # one grouped count.
        "calibrate": every("enrichment.calibrate", settings.reviews.refit_interval_s),
        # The backstop: events whose push was lost, or whose retry came due.
        "deliver": every("enrichment.deliver", settings.webhooks.interval_s),
        # History past retention, in short chunks (enrichment/history/pruner.py); on the
        # default queue: it can wait behind the stages, never the monitor or deliveries.
        "prune": every("enrichment.prune", prune_s),
        # PostgreSQL's time partitions of the history: made ahead, dropped whole past
        # retention (enrichment/history/partitions.py, retire.py); a no-op on SQLite.
        "partitions": every("enrichment.partitions", prune_s),
    }
