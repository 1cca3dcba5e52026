"""Engine and sessions, made per process (after fork) and disposed at shutdown."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.orm import Session, sessionmaker

_engines: dict[str, Engine] = {}


def make_engine(
    url: str,
    *,
    pool_size: int = 5,
    max_overflow: int = 5,
    pool_timeout: float = 30.0,
    create: bool = True,
) -> Engine:
    """pool_size/max_overflow: PostgreSQL connections kept open / opened on demand;
    pool_timeout: seconds a checkout waits for one (then sqlalchemy.exc.TimeoutError);
    create=False: an absent SQLite file is an error ("unable to open database file"), not a
    new empty database (a command run from another folder must not leave one there)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if create and path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        if not create and path and path != ":memory:":
            event.listen(engine, "do_connect", _sqlite_existing_only)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # pre_ping: a connection killed by pg_terminate_backend or a restart is replaced,
    # not handed to a task.
    # jit off: the claim and the monitor are short OLTP queries whose estimated cost can
    # pass jit_above_cost at 1M rows; compiling them cost ~10 ms per call in P3.
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        connect_args={"options": "-c jit=off"},
    )


def _sqlite_existing_only(_dialect, _record, cargs, cparams) -> None:
    # sqlite3's URI mode=rw opens an existing file only; pysqlite passes the path first.
    cargs[0] = f"file:{quote(str(Path(cargs[0]).resolve()))}?mode=rw"
    cparams["uri"] = True


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # WAL lets the demo's worker, beat and progress bar read while another writes.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def write_lock(session: Session) -> None:
    """On SQLite, open the session's transaction with BEGIN IMMEDIATE: the write lock taken
    first, waiting out another writer (busy_timeout). A transaction that reads (a SAVEPOINT
    opens one) and then writes fails at once with "database is locked" if another writer
    committed in between (WAL's stale snapshot), and every retry inside it fails the same way.
    Call it first thing in the transaction. PostgreSQL: nothing to do."""
    if session.get_bind().dialect.name == "sqlite":
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")


def get_engine(url: str) -> Engine:
    if url not in _engines:
        from enrichment.core.settings import get_settings

        # ENRICHMENT_DB_POOL_SIZE / ENRICHMENT_DB_MAX_OVERFLOW: see Settings.
        settings = get_settings()
        _engines[url] = make_engine(
            url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            create=False,  # only `enrichment migrate` (Alembic's own engine) makes the file
        )
    return _engines[url]


def dispose_engines(*, close: bool = True) -> None:
    """After fork pass close=False: drop the parent's pooled connections without closing them."""
    for engine in [*_engines.values(), *_api_engines.values()]:
        engine.dispose(close=close)


def alembic_config(url: str):
    """Alembic's configuration ([tool.alembic] in pyproject.toml) aimed at `url`."""
    from alembic.config import Config

    cfg = Config(toml_file=str(Path(__file__).resolve().parents[2] / "pyproject.toml"))
    cfg.attributes["database_url"] = url
    return cfg


def migrate(url: str, revision: str = "heads") -> None:
    """Upgrade the database at `url` to `revision` with the real migrations (every head:
    revisions written side by side each build on the last merged one until they are chained)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(get_engine(url), expire_on_commit=False)


_api_engines: dict[tuple, Engine] = {}


def api_session_factory(settings) -> sessionmaker[Session]:
    """The API process's sessions: its pool as `settings` sizes it, and a short wait for a
    free connection (ENRICHMENT_API_POOL_TIMEOUT_S), so a flood answers 503 soon instead of
    holding every request for the default 30 s."""
    key = (settings.database_url, settings.db_pool_size, settings.db_max_overflow,
           settings.api_pool_timeout_s)  # fmt: skip
    if key not in _api_engines:
        if settings.database_url.startswith("sqlite"):
            _api_engines[key] = get_engine(settings.database_url)
        else:
            _api_engines[key] = make_engine(
                settings.database_url,
                pool_size=settings.db_pool_size,
                max_overflow=settings.db_max_overflow,
                pool_timeout=settings.api_pool_timeout_s,
            )
    return sessionmaker(_api_engines[key], expire_on_commit=False)


@contextmanager
def exclusive(engine: Engine, key: int) -> Iterator[bool]:
    """True while this process holds the fleet's one run of a job (a PostgreSQL session
    advisory lock on `key`, released with its connection if the process dies); False when
    another process holds it. SQLite (one process): always True."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    with engine.connect() as conn:
        mine = bool(conn.execute(select(func.pg_try_advisory_lock(key))).scalar())
        conn.commit()
        try:
            yield mine
        finally:
            if mine:
                conn.execute(select(func.pg_advisory_unlock(key)))
                conn.commit()
