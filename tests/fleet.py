"""Real Celery worker and beat subprocesses on the test Redis and PostgreSQL.

The processes come from `enrichment.tooling.processes`, the one manager of fleet subprocesses;
this module only adds the test environment.
"""

from __future__ import annotations

from pathlib import Path

from enrichment.tooling.processes import (
    ROOT,
    Proc,
    scrubbed_env,
    start_beat,
    start_worker,
    stop_all,
    wait_for,
)

__all__ = ["ROOT", "Proc", "fleet_env", "start_beat", "start_worker", "stop_all", "wait_for"]


def fleet_env(db_url: str, broker_url: str, var_dir: Path, **overrides: str) -> dict[str, str]:
    """A fleet on the test services with the local provider and a fast sweep; `overrides` last."""
    test_env = dict(
        DATABASE_URL=db_url,
        CELERY_BROKER_URL=broker_url,
        ENRICHMENT_VAR_DIR=str(var_dir),
        ENRICHMENT_AI_PROVIDER="local",
        ENRICHMENT_SWEEP_INTERVAL_S="0.5",
        ENRICHMENT_LOG_FORMAT="json",
    )
    return scrubbed_env(**{**test_env, **overrides})
