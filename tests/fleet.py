"""Real Celery worker and beat subprocesses on the test Redis and PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def fleet_env(db_url: str, broker_url: str, var_dir: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENRICHMENT_", "ANTHROPIC_"))}
    env.update(
        DATABASE_URL=db_url,
        CELERY_BROKER_URL=broker_url,
        ENRICHMENT_VAR_DIR=str(var_dir),
        ENRICHMENT_AI_PROVIDER="local",
        ENRICHMENT_SWEEP_INTERVAL_S="0.5",
        ENRICHMENT_LOG_FORMAT="json",
    )
    env.update(overrides)
    return env


class Proc:
    """One celery process, its output in a log file, killed with its children at the end."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers", *args],
            cwd=ROOT,
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a kill takes the children too
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)
        self.popen.wait(timeout=30)
        self._out.close()

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._out.close()


def start_worker(env, log: Path, *, concurrency: int = 2, name: str = "w1") -> Proc:
    proc = Proc(
        [
            "worker",
            f"--concurrency={concurrency}",
            "--loglevel=INFO",
            "-n",
            f"{name}@%h",
            "--without-mingle",
            "--without-gossip",
        ],
        env,
        log,
    )
    wait_for(lambda: "ready" in proc.text(), timeout_s=60, what=f"worker {name} ready", proc=proc)
    return proc


def start_beat(env, log: Path, schedule: Path) -> Proc:
    return Proc(["beat", "--loglevel=INFO", "-s", str(schedule)], env, log)


def wait_for(cond: Callable[[], bool], *, timeout_s: float, what: str, proc: Proc | None = None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        if proc is not None and proc.popen.poll() is not None:
            raise AssertionError(f"process exited while waiting for {what}:\n{proc.text()[-3000:]}")
        time.sleep(0.2)
    tail = proc.text()[-3000:] if proc else ""
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}\n{tail}")
