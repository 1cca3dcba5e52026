"""A user's mistake at the command line is one line that says what to do, never a traceback.

Given an embedded database with one tenant, when each subcommand runs with a mistake a new
user makes, then it exits non-zero, prints no "Traceback", and its last stderr line says
what went wrong.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import structlog

from enrichment.tooling.processes import ROOT

CASES = {
    "ingest a missing file": (["ingest", "/nonexistent/records.jsonl"], {}, "no such file"),
    "tenant-add a bad name": (["tenant-add", "Bad_Name"], {}, "bad tenant name"),
    "tenant-add a duplicate": (["tenant-add", "known-3pl"], {}, "already exists"),
    "tenant-add a threshold of 3": (["tenant-add", "x", "--threshold", "3"], {}, "outside [0, 1]"),
    "tenant-key without --rotate": (["tenant-key", "known-3pl"], {}, "--rotate"),
    "tenant-key an unknown tenant": (["tenant-key", "nobody", "--rotate"], {}, "unknown tenant"),
    "reviewer add to an unknown tenant": (["reviewer", "add", "nobody", "Ann"], {}, "unknown"),
    "reviewer add a blank name": (["reviewer", "add", "known-3pl", " "], {}, "1 to 64"),
    "reviewer revoke an unknown one": (["reviewer", "revoke", "known-3pl", "X"], {}, "no active"),
    "audit with a limit of 0": (["audit", "known-3pl", "--limit", "0"], {}, "1 or more"),
    "status of an unknown tenant": (["status", "nobody"], {}, "unknown tenant"),
    "report of an unknown tenant": (["report", "nobody"], {}, "unknown tenant"),
    "an unparsable DATABASE_URL": (["status", "x"], {"DATABASE_URL": "nonsense"}, "parsed"),
    "an unreachable DATABASE_URL": (
        ["status", "x"],
        {"DATABASE_URL": "postgresql+psycopg://u:pw@127.0.0.1:1/db"},
        "cannot use the database",
    ),
    "status before migrate": (["status", "x"], {"DATABASE_URL": "EMPTY"}, "enrichment migrate"),
    "ingest a folder": (["ingest", "/tmp"], {}, "/tmp is a folder: give a file"),
    "a mysql:// DATABASE_URL": (
        ["status", "x"],
        {"DATABASE_URL": "mysql://u:pw@db/x"},
        "use postgresql+psycopg://",
    ),
    "a postgres:// DATABASE_URL": (
        ["migrate"],
        {"DATABASE_URL": "postgres://u:pw@db/x"},
        "use postgresql+psycopg://",
    ),
    "migrate with the database down": (
        ["migrate"],
        {"DATABASE_URL": "postgresql+psycopg://u:pw@127.0.0.1:1/db"},
        "cannot use the database postgresql+psycopg://u:***@127.0.0.1:1/db",
    ),
    "fake-anthropic with bad faults": (["fake-anthropic", "--faults", "bad"], {}, "probability"),
    "eval on a missing file": (["eval", "--data", "/nonexistent.jsonl"], {}, "no such file"),
    "drill with a bad flag value": (["drill", "--records=abc"], {}, "invalid int value"),
    "bench with an unknown flag": (["bench", "--bogus"], {}, "unrecognized arguments"),
    "an unknown subcommand": (["frobnicate"], {}, "invalid choice"),
    "show an unknown record": (["show", "known-3pl", "nope-1"], {}, "has no record 'nope-1'"),
    "show an unknown tenant": (["show", "nobody", "x-1"], {}, "unknown tenant"),
    "webhook over http": (["webhook", "known-3pl", "http://example.com/h"], {}, "https://"),
    "webhook to loopback": (["webhook", "known-3pl", "https://127.0.0.1/h"], {}, "loopback"),
    "webhook with no URL": (["webhook", "known-3pl"], {}, "either a URL or --off"),
    "webhook for an unknown tenant": (["webhook", "nobody", "--off"], {}, "unknown tenant"),
}


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """An SQLite database, migrated, with tenant known-3pl; and an empty one."""
    var = tmp_path_factory.mktemp("cli")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENRICHMENT_")}
    env.update(DATABASE_URL=f"sqlite:///{var / 'cli.db'}", ENRICHMENT_VAR_DIR=str(var))
    for args in (["migrate"], ["tenant-add", "known-3pl"]):
        run(args, env).check_returncode()
    return env, f"sqlite:///{var / 'empty.db'}"


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "enrichment.cli", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_every_mistake_is_one_clear_line(embedded):
    base_env, empty_url = embedded

    def attempt(case):
        args, env_changes, expected = CASES[case]
        env = {**base_env, **env_changes}
        if env.get("DATABASE_URL") == "EMPTY":
            env["DATABASE_URL"] = empty_url
        return case, expected, run(args, env)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(attempt, CASES))
    for case, expected, done in results:
        output = done.stdout + done.stderr
        assert "Traceback" not in output, f"{case}:\n{output}"
        assert done.returncode != 0, f"{case}: exit 0\n{output}"
        last = done.stderr.strip().splitlines()[-1]
        assert expected in last, f"{case}: {last!r}"
        assert "pw" not in output, f"{case}: a password in {output!r}"


def test_an_unknown_tenant_in_a_celery_call_is_one_error_line(pg_url, factory):
    # `celery -A workers call enrichment.requeue --args '["nobody"]'`: the task body runs
    # here directly (a plain call, not eager mode): no exception, an error line, nothing done.
    from workers import tasks

    with structlog.testing.capture_logs() as logs:
        assert tasks.requeue("nobody") == 0
        assert tasks.sweep("nobody") == 0
    errors = [e for e in logs if e["log_level"] == "error"]
    assert [e["event"] for e in errors] == ["task.unknown_tenant"] * 2


def test_a_command_names_the_database_it_finds_absent_and_creates_nothing(embedded):
    # Run from another folder with the default database: it is not there, and stays not there.
    env, empty_url = embedded
    done = run(["status", "x"], {**env, "DATABASE_URL": empty_url})
    path = empty_url.removeprefix("sqlite:///")
    assert done.stderr.strip() == (
        f"enrichment: the database {empty_url} does not exist: run `enrichment migrate` first"
        " (or set DATABASE_URL)"
    )
    assert not os.path.exists(path)


def test_exit_codes_tell_a_usage_error_from_a_critical_tenant(embedded):
    env, _ = embedded
    codes = {
        "usage": run(["status"], env).returncode,  # argparse: a missing argument
        "a tool's usage": run(["bench", "--bogus"], env).returncode,
        "a mistake": run(["tenant-key", "known-3pl"], env).returncode,  # no --rotate
        "configuration": run(["status", "x"], {**env, "DATABASE_URL": "mysql://h/x"}).returncode,
        "unavailable": run(
            ["status", "x"], {**env, "DATABASE_URL": "postgresql+psycopg://127.0.0.1:1/x"}
        ).returncode,
    }
    assert codes == {
        "usage": 64,
        "a tool's usage": 64,
        "a mistake": 64,
        "configuration": 78,
        "unavailable": 69,
    }
