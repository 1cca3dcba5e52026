"""A redis-server of our own: started on a free port for whatever restarts or flushes a Redis
(the drill's broker fault, the bench's resets, the test session), stopped at the end.

The Redis on 127.0.0.1:6379 is shared (other people's data, other test runs): nothing here
shuts it down or flushes it. Our own server runs with no persistence (`--save ""`,
`--appendonly no`), so a restart loses every queued message, as the broker fault must.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import redis

from enrichment.tooling.processes import Proc

INSTALL = "apt-get install redis-server"
START_TIMEOUT_S = 20.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(port: int) -> bool:
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def shutdown_nosave(port: int) -> None:
    """`redis-cli shutdown nosave` on `port`: the server exits and its data is gone."""
    subprocess.run(
        ["redis-cli", "-p", str(port), "shutdown", "nosave"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )


class RedisServer:
    """One redis-server process of ours, on `port` (logs `redis-N.log` in `run_dir`).

    Not daemonized: it is a `Proc` in its own process group, so its owner stops exactly the
    process it started, by its id."""

    def __init__(self, port: int, run_dir: Path) -> None:
        self.port, self.run_dir = port, run_dir
        self.proc: Proc | None = None
        self.starts = 0

    @property
    def args(self) -> list[str]:
        return [
            "redis-server",
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.run_dir),
        ]  # fmt: skip

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start it (if it is not running) and wait until it answers PING."""
        if self.proc is not None and self.proc.alive():
            return
        self.starts += 1
        try:
            self.proc = Proc(self.args, None, self.run_dir / f"redis-{self.starts}.log")
        except FileNotFoundError:
            raise RuntimeError(f"redis-server is not installed ({INSTALL})") from None
        deadline = time.monotonic() + timeout_s
        while not answers(self.port):
            if not self.proc.alive() or time.monotonic() > deadline:
                tail = self.proc.text()[-800:]
                raise RuntimeError(f"our redis-server on {self.port} did not start\n{tail}")
            time.sleep(0.05)

    def restart(self) -> float:
        """`shutdown nosave` (the queue is lost), then start again; seconds until PING."""
        began = time.monotonic()
        shutdown_nosave(self.port)
        self.stop()  # reaps the exited process (SIGKILL if it did not exit within 10 s)
        self.start()
        return time.monotonic() - began

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the process this object started (SIGTERM, then SIGKILL); nothing else."""
        if self.proc is not None:
            self.proc.stop(timeout_s=timeout_s)
            self.proc = None
