"""The processes a benchmark runs: the fake Anthropic server, workers, beat, and their RSS.

Starting, waiting for and stopping them is `enrichment.tooling.processes`; this module only
says which command, environment and log file each benchmark process gets.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from enrichment.core.settings import Settings, get_settings
from enrichment.tooling import processes
from enrichment.tooling.bench.common import HOST, Services
from enrichment.tooling.processes import Proc

# Imported by every worker the bench starts: it registers the no-op baseline task.
BENCH_CHAIN_MODULE = "workers.bench_chain"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_fake(services: Services, latency_s: float) -> tuple[Proc, str]:
    """The fake Anthropic server in its own process (its GIL is not the bench's)."""
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "enrichment.tooling.bench",
        "serve-fake",
        str(port),
        str(latency_s),
    ]
    proc = Proc(args, services.env(), services.out_dir / f"fake-{latency_s:g}s.log")
    processes.wait_for(
        lambda: "point the provider" in proc.text(), timeout_s=30, what="fake server", poll_s=0.1
    )
    return proc, f"http://{HOST}:{port}"


def serve_fake(port: int, latency_s: float) -> int:
    """`fake_anthropic.serve` with a listen backlog of 1024 instead of socketserver's
    5: with ~100 connections opening at once the stock backlog resets some of them (measured:
    ConnectionResetError at 150 in flight), which would measure the fake, not the fleet."""
    from enrichment.tooling import fake_anthropic

    fake_anthropic._Server.request_queue_size = 1024
    fake_anthropic.serve(port=port, latency_s=latency_s)
    return 0


def parse_pool(spec: str) -> tuple[str, int, int]:
    """ "threads:75x2" -> ("threads", 75, 2): two worker processes of 75 threads each."""
    pool, _, rest = spec.partition(":")
    concurrency, _, nodes = rest.partition("x")
    return pool, int(concurrency or 2), int(nodes or 1)


def calls_in_flight(spec: str) -> int:
    _pool, concurrency, nodes = parse_pool(spec)
    return concurrency * nodes


def start_worker(services: Services, spec: str, name: str, **env: str) -> Proc:
    """One worker process with the pool and concurrency of `spec`; returns once it is ready."""
    pool, concurrency, _nodes = parse_pool(spec)
    return processes.start_worker(
        services.env(**env),
        services.out_dir / f"worker-{name}.log",
        name=name,
        concurrency=concurrency,
        extra_args=("-I", BENCH_CHAIN_MODULE, f"--pool={pool}"),
    )


def start_beat(services: Services, **env: str) -> Proc:
    return processes.start_beat(
        services.env(**env), services.out_dir / "beat.log", services.out_dir / "beat-schedule"
    )


def send_sweep(broker_url: str | None = None) -> None:
    """One `enrichment.sweep` message, by name, to the bench's broker (the settings' now,
    read after `prepare` set it; not the app made when workers was first imported)."""
    from workers import queues

    settings = get_settings() if broker_url is None else Settings(broker_url=broker_url)
    app = queues.bare_app("bench", settings)
    try:
        app.send_task("enrichment.sweep")
    finally:
        app.close()


def tree_rss_bytes(pid: int) -> int:
    """VmRSS of `pid` and all its descendants, from /proc (0 for a process that is gone)."""
    total = 0
    for p in _descendants(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used so far, from /proc/<pid>/stat."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / tick


def process_groups(**trees: int) -> dict[str, list[int]]:
    """The bench's processes by role: each named tree (a root pid and its descendants), plus
    every PostgreSQL and Redis server process on the machine."""
    groups = {name: _descendants(pid) for name, pid in trees.items()}
    for name, comm in (("postgres", "postgres"), ("redis", "redis-server")):
        groups[name] = [p for p in _all_pids() if _comm(p).startswith(comm)]
    return groups


def _all_pids() -> list[int]:
    return [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit()]


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo.extend(int(c) for c in task.read_text().split())
            except OSError:
                continue
    return found
