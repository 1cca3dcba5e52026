"""Can this process use its database: reachable, and at the migrations' head. Each answer is
None or one line that says what to do (the broker's half is workers/readiness.py: Celery's).

Workers, beat and the API refuse to start on a problem; `/readyz` answers it; the CLI and
the API's 503 explain a database error with `explain`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

# A start-up check or a probe waits this long for a server that does not answer.
CONNECT_TIMEOUT_S = 5
MIGRATE = "run `enrichment migrate`"


def describe(url: str) -> str:
    """The URL as it can be shown: without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "DATABASE_URL (unparsable)"


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL; None for another database or an in-memory one."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[-1].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def _name(url: str, public: bool) -> str:
    # A public answer (/readyz, a 503) names no host, user or database.
    return "the database" if public else f"the database {describe(url)}"


def _first_line(exc: BaseException) -> str:
    return (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0]


def missing_table(exc: BaseException) -> bool:
    text = _first_line(exc)
    return "no such table" in text or ("relation" in text and "does not exist" in text)


def missing_column(exc: BaseException) -> bool:
    text = _first_line(exc)
    return "no such column" in text or ("column" in text and "does not exist" in text)


def explain(exc: BaseException, url: str, *, public: bool = False) -> str:
    """One line for a database error: absent, not migrated, older, or unreachable."""
    text = _first_line(exc)
    name = _name(url, public)
    if "unable to open database file" in text:
        return f"{name} does not exist: {MIGRATE} first (or set DATABASE_URL)"
    if missing_table(exc):
        return f"{name} has no tables: {MIGRATE} first"
    if missing_column(exc):
        return f"{name} is from an older version: {MIGRATE} to upgrade it"
    return f"{name} is unavailable" if public else f"cannot use {name}: {text}"


def database_problem(url: str, *, public: bool = False) -> str | None:
    """None when the database answers and is at head; else the one line. Creates nothing:
    an absent SQLite file stays absent."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    path = sqlite_path(url)
    if path is not None and not path.exists():
        return f"{_name(url, public)} does not exist: {MIGRATE} first (or set DATABASE_URL)"
    args = {} if url.startswith("sqlite") else {"connect_timeout": CONNECT_TIMEOUT_S}
    try:
        engine = create_engine(url, poolclass=NullPool, connect_args=args)
        try:
            with engine.connect() as conn:
                current = _revisions(conn)
        finally:
            engine.dispose()
    except Exception as exc:  # unreachable, refused, a bad password: said in one line
        return explain(exc, url, public=public)
    return _revision_problem(_name(url, public), current, heads())


@lru_cache(maxsize=1)
def heads() -> frozenset[str]:
    """The migrations' head revisions (read once per process: the files do not change)."""
    from alembic.script import ScriptDirectory

    from enrichment.core import db

    return frozenset(ScriptDirectory.from_config(db.alembic_config("")).get_heads())


def _revisions(conn) -> set[str]:
    """The revisions the database says it is at (Alembic's table); none when it has none."""
    from sqlalchemy import inspect, text

    if not inspect(conn).has_table("alembic_version"):
        return set()
    return set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


def _revision_problem(name: str, current: set[str], wanted: frozenset[str]) -> str | None:
    if current == wanted:
        return None
    if not current:
        return f"{name} has no tables: {MIGRATE} first"
    # Older than this code, or newer (migrated by a later version): both are a refusal.
    return (
        f"{name} is at revision {', '.join(sorted(current))}, this version wants"
        f" {', '.join(sorted(wanted))}: {MIGRATE} (or run the version that migrated it)"
    )
