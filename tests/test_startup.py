"""Nothing starts broken: a worker, beat or the API whose database is unreachable or not
migrated, or whose broker is unreachable, refuses to start with one line (issue 23); the
API's probes say whether it can serve, and a request while the database is down is a 503.

Real subprocesses on real services; an unreachable server is a closed port on 127.0.0.1, an
unmigrated one a scratch PostgreSQL database of this test's own (the shared server is never
stopped).
"""

from __future__ import annotations

import socket
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from enrichment.api import app, deps
from enrichment.tooling.processes import Proc, celery_command, scrubbed_env, wait_for
from tests.conftest import REDIS_URL


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def unmigrated_url(pg_url):
    """An empty PostgreSQL database next to the test one, dropped afterwards."""
    base, name = pg_url.rsplit("/", 1)
    admin = create_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
    scratch = f"{name}_unmigrated"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{scratch}"'))
    yield f"{base}/{scratch}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)'))
    admin.dispose()


def refused(args: list[str], tmp_path: Path, **env: str) -> tuple[int, str]:
    """Run a fleet process until it exits (bounded); its exit code and output."""
    proc = Proc(args, scrubbed_env(ENRICHMENT_VAR_DIR=str(tmp_path), **env), tmp_path / "out.log")
    try:
        wait_for(lambda: not proc.alive(), timeout_s=60, what="the process to exit")
    finally:
        proc.stop()
    return proc.popen.returncode, proc.text()


def assert_one_line(output: str, expected: str) -> None:
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if "refusing to start" in line]
    assert len(lines) == 1 and expected in lines[0], output


WORKER = celery_command("worker", "--without-mingle", "--without-gossip", "-c", "1")


def test_a_worker_refuses_an_unreachable_database_before_consuming(tmp_path):
    db_url = f"postgresql+psycopg://127.0.0.1:{closed_port()}/nothing"
    code, out = refused(WORKER, tmp_path, DATABASE_URL=db_url, CELERY_BROKER_URL=REDIS_URL)
    assert code == 1
    assert_one_line(out, "refusing to start: cannot use the database")
    assert " ready" not in out


def test_a_worker_refuses_an_unmigrated_database(tmp_path, unmigrated_url):
    code, out = refused(WORKER, tmp_path, DATABASE_URL=unmigrated_url, CELERY_BROKER_URL=REDIS_URL)
    assert code == 1
    assert_one_line(out, "has no tables: run `enrichment migrate` first")
    assert " ready" not in out


def test_a_worker_refuses_an_unreachable_broker(tmp_path, pg_url):
    broker = f"redis://127.0.0.1:{closed_port()}/0"
    code, out = refused(WORKER, tmp_path, DATABASE_URL=pg_url, CELERY_BROKER_URL=broker)
    assert code == 1
    assert_one_line(out, "cannot reach the broker redis://")
    assert " ready" not in out


def test_a_worker_refuses_a_postgres_url_with_the_spelling_to_use(tmp_path):
    url = "postgres://u:secret@127.0.0.1:5432/x"
    code, out = refused(WORKER, tmp_path, DATABASE_URL=url, CELERY_BROKER_URL=REDIS_URL)
    assert code == 78  # EX_CONFIG
    assert_one_line(out, "DATABASE_URL postgres://… is not supported: use postgresql+psycopg://")
    assert "secret" not in out


def test_beat_refuses_an_absent_sqlite_database_and_does_not_create_it(tmp_path):
    path = tmp_path / "var" / "enrichment.db"
    args = celery_command("beat", "-s", str(tmp_path / "schedule"))
    code, out = refused(args, tmp_path, DATABASE_URL=f"sqlite:///{path}")
    assert code == 1
    assert_one_line(out, f"the database sqlite:///{path} does not exist")
    assert not path.exists() and not path.parent.exists()


def test_the_api_refuses_to_start_on_an_unreachable_database(tmp_path):
    db_url = f"postgresql+psycopg://127.0.0.1:{closed_port()}/nothing"
    args = [sys.executable, "-m", "uvicorn", "enrichment.api:app", "--port", str(closed_port())]
    code, out = refused(args, tmp_path, DATABASE_URL=db_url, CELERY_BROKER_URL=REDIS_URL)
    assert code != 0
    assert_one_line(out, "refusing to start: cannot use the database")
    assert "Uvicorn running" not in out


@pytest.fixture
def probe(settings):
    """The API with `settings` as given by each test (no lifespan: the checks are the probes)."""
    yield lambda s: app.dependency_overrides.__setitem__(deps.app_settings, lambda: s)
    app.dependency_overrides.clear()


def test_livez_and_readyz_on_a_healthy_fleet(settings, probe):
    probe(settings)
    http = TestClient(app)
    assert http.get("/livez").json() == {"detail": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"detail": "ok"}


@pytest.mark.parametrize(
    "broken, reason",
    [
        ("database_down", "the database is unavailable"),
        ("unmigrated", "the database has no tables: run `enrichment migrate` first"),
        ("broker_down", "the broker is unreachable"),
    ],
)
def test_readyz_answers_503_with_the_reason_and_names_no_host(
    settings, probe, unmigrated_url, broken, reason
):
    port = closed_port()
    probe(
        {
            "database_down": replace(
                settings, database_url=f"postgresql+psycopg://u:secret@127.0.0.1:{port}/db"
            ),
            "unmigrated": replace(settings, database_url=unmigrated_url),
            "broker_down": replace(settings, broker_url=f"redis://:secret@127.0.0.1:{port}/0"),
        }[broken]
    )
    answer = TestClient(app).get("/readyz")
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
    assert answer.json() == {"detail": reason}
    assert "127.0.0.1" not in answer.text and "secret" not in answer.text


@pytest.mark.parametrize("broken", ["database_down", "unmigrated"])
def test_a_request_while_the_database_is_down_is_a_503_not_a_500(
    settings, probe, unmigrated_url, broken
):
    down = f"postgresql+psycopg://127.0.0.1:{closed_port()}/db"
    probe(replace(settings, database_url=down if broken == "database_down" else unmigrated_url))
    answer = TestClient(app).get(
        "/api/enrichment/health/acme", headers={"Authorization": "Bearer k"}
    )
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "5"
    detail = answer.json()["detail"]
    assert detail.startswith("the database ") and "\n" not in detail
