"""Can this process serve: the database (core's check) and the broker, with the transport
options the workers use. None, or one line that says what to do.

A worker and beat refuse to start on it (workers/app.py); the API refuses to start on it and
`/readyz` answers it (enrichment/api/probes.py).
"""

from __future__ import annotations

from kombu import Connection

from enrichment.core import readiness
from enrichment.core.settings import Settings
from workers.queues import broker_options


def broker_problem(settings: Settings, *, public: bool = False) -> str | None:
    """None when the broker accepts a connection (the embedded filesystem broker always
    does); else the one line. A public line names no host and no password."""
    if settings.broker_url.startswith("filesystem"):
        return None
    conn = Connection(
        settings.broker_url,
        connect_timeout=readiness.CONNECT_TIMEOUT_S,
        transport_options=broker_options(settings),
    )
    try:
        # One attempt, no retry loop: Celery's own retries would log and wait for minutes.
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=readiness.CONNECT_TIMEOUT_S)
    except Exception as exc:
        if public:
            return "the broker is unreachable"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"cannot reach the broker {conn.as_uri()}: {first}"
    finally:
        conn.release()
    return None


def problem(settings: Settings, *, public: bool = False) -> str | None:
    """The database's problem, else the broker's; None when both can serve."""
    found = readiness.database_problem(settings.database_url, public=public)
    return found if found is not None else broker_problem(settings, public=public)
