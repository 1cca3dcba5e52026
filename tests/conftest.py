"""Real PostgreSQL (built by the real migrations) and real Redis; no mocks of either.

TEST_DATABASE_URL chooses the database (default `test`). The tests flush their Redis db, so
they run on a redis-server of this session's own, on a free port (the Redis on 6379 may hold
other people's data), unless TEST_REDIS_URL names one. A missing service fails the run; it
never skips.
"""

from __future__ import annotations

import atexit
import os
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from alembic import command
from sqlalchemy import text

from enrichment.core import db
from enrichment.core.models import Base
from enrichment.core.settings import ReviewConfig, Settings, get_settings
from enrichment.tooling.redis_server import RedisServer, free_port
from tests.celery_fixtures import (  # noqa: F401 - fixtures, found by name
    celery_session_app,
    celery_worker_parameters,
    celery_worker_pool,
    inproc_worker,
)

PG_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://127.0.0.1:5432/test")


def _own_redis() -> str:
    """A redis-server of this test session's, stopped when the session's process exits."""
    server = RedisServer(free_port(), Path(tempfile.mkdtemp(prefix="test-redis-")))
    server.start()
    atexit.register(server.stop)
    return f"redis://127.0.0.1:{server.port}/0"


REDIS_URL = os.environ.get("TEST_REDIS_URL") or _own_redis()
# Anything in this process that builds the Celery app or settings uses the test services.
os.environ["DATABASE_URL"] = PG_URL
os.environ["CELERY_BROKER_URL"] = REDIS_URL


def migrate(url: str, revision: str = "heads", *, down: bool = False) -> None:
    (command.downgrade if down else command.upgrade)(db.alembic_config(url), revision)


@pytest.fixture(scope="session")
def pg_url() -> str:
    engine = db.get_engine(PG_URL)
    with engine.begin() as conn:  # start from nothing, whatever a crashed run left
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    migrate(PG_URL)
    return PG_URL


@pytest.fixture
def settings(pg_url) -> Settings:
    return Settings(
        database_url=pg_url,
        broker_url=REDIS_URL,
        backoff_scale=1.0,
        sweep_horizon_s=360.0,
        lease_ttl_s=600.0,
        # No random audit sample unless a test asks for one: queues stay predictable.
        reviews=ReviewConfig(audit_rate=0.0),
    )


@pytest.fixture
def factory(pg_url):
    """A session factory on the test database; every table is emptied after the test."""
    yield db.session_factory(pg_url)
    tables = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))
    with db.get_engine(pg_url).begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["postgresql", "sqlite"])
def any_factory(request, factory, tmp_path):
    """The same test on both databases: the test PostgreSQL, and SQLite as the embedded
    default runs it (no SKIP LOCKED, no transaction ids), migrated the real way."""
    if request.param == "postgresql":
        return factory
    url = f"sqlite:///{tmp_path / 'embedded.db'}"
    migrate(url)
    return db.session_factory(url)


@pytest.fixture
def redis_client():
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def with_settings(settings: Settings, **changes) -> Settings:
    return replace(settings, **changes)


@pytest.fixture
def enqueued():
    """What the API's process route enqueued: (record id, lease token, countdown) tuples."""
    return []


@pytest.fixture
def client(settings, factory, enqueued):
    """The API on the test database, with enqueuing captured in `enqueued`."""
    from fastapi.testclient import TestClient

    from enrichment.api import app, deps

    app.dependency_overrides[deps.app_settings] = lambda: settings
    app.dependency_overrides[deps.enqueuer] = lambda: lambda *args: enqueued.append(args)
    yield TestClient(app)
    app.dependency_overrides.clear()


@pytest.fixture
def cli(pg_url, monkeypatch, capsys):
    """`enrichment ...` in this process on the test database: (exit code, stdout, stderr)."""
    monkeypatch.setenv("DATABASE_URL", pg_url)
    get_settings.cache_clear()

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()  # what setting up the world logged is not the command's output
        from enrichment.cli import main

        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    yield run
    get_settings.cache_clear()
