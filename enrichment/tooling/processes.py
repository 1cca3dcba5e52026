"""Celery worker and beat subprocesses, their environment, and a scratch PostgreSQL database:
the one place the demo, the drill, the bench and the tests start and stop a fleet.

Every process runs in its own process group, so a kill takes the pool children too, and
writes its output to a log file; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = "postgresql+psycopg://127.0.0.1:5432/postgres"
# Variables that would leak the caller's configuration (or secrets) into a scratch fleet.
SCRUBBED_PREFIXES = ("ENRICHMENT_", "ANTHROPIC_", "SLACK_")


def scrubbed_env(**overrides: str) -> dict[str, str]:
    """This process's environment without our own variables, plus `overrides`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_PREFIXES)}
    env.update(overrides)
    return env


class Proc:
    """One child process in its own process group, its output in `log_path`."""

    def __init__(self, args: list[str], env: dict[str, str] | None, log_path: Path) -> None:
        self.log_path = log_path
        self._out = open(log_path, "w")  # noqa: SIM115 - closed in stop() / kill()
        self.popen = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole group (main process and pool children) and reap it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)
        self.popen.wait(timeout=30)
        self._out.close()

    def stop(self, timeout_s: float = 20.0) -> None:
        """Warm shutdown (SIGTERM: running tasks finish), SIGKILL after `timeout_s`."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        self._out.close()


def stop_all(procs: list[Proc], timeout_s: float = 20.0) -> None:
    """SIGTERM every process first, so they shut down in parallel, then reap each."""
    for proc in procs:
        if proc.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        proc.stop(timeout_s=max(0.1, deadline - time.monotonic()))


def celery_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "workers", *args]


def start_worker(
    env: dict[str, str] | None,
    log_path: Path,
    *,
    name: str,
    concurrency: int = 2,
    extra_args: tuple[str, ...] = (),
    ready_timeout_s: float | None = 60.0,
) -> Proc:
    """A worker named `name@host`; waits until it logs "ready" unless the timeout is None."""
    args = [f"--concurrency={concurrency}", "--loglevel=INFO", "-n", f"{name}@%h"]
    mingle = ["--without-mingle", "--without-gossip"]
    proc = Proc(celery_command("worker", *args, *mingle, *extra_args), env, log_path)
    if ready_timeout_s is not None:
        wait_ready(proc, what=f"worker {name}", timeout_s=ready_timeout_s)
    return proc


def start_beat(env: dict[str, str] | None, log_path: Path, schedule: Path) -> Proc:
    for old in schedule.parent.glob(schedule.name + "*"):
        old.unlink()  # a stale schedule file from an earlier run would skew the first sweep
    return Proc(celery_command("beat", "--loglevel=INFO", "-s", str(schedule)), env, log_path)


def wait_ready(proc: Proc, *, what: str, timeout_s: float = 60.0) -> None:
    """Until a Celery process logs that it is ready; stops it and raises if it never does."""
    try:
        wait_for(lambda: " ready" in proc.text(), timeout_s=timeout_s, what=what, proc=proc)
    except TimeoutError:
        proc.stop()
        raise


def wait_for(
    cond: Callable[[], bool],
    *,
    timeout_s: float,
    what: str,
    proc: Proc | None = None,
    poll_s: float = 0.2,
) -> None:
    """Poll `cond` until true; TimeoutError (with the process's log tail) otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        if proc is not None and not proc.alive():
            raise TimeoutError(f"process exited while waiting for {what}:\n{proc.text()[-3000:]}")
        time.sleep(poll_s)
    tail = proc.text()[-3000:] if proc else ""
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}\n{tail}")


def recreate_database(name: str) -> str:
    """Drop and create database `name` on the local PostgreSQL, migrate it; its URL."""
    from sqlalchemy import create_engine, text

    from enrichment.core import db

    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = f"postgresql+psycopg://127.0.0.1:5432/{name}"
    db.migrate(url)
    return url
