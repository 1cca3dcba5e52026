"""The fault drill, shortened: 60 records, every fault, every check must pass.

Given the drill's own PostgreSQL database and Redis server, when `enrichment drill` runs with
60 records (30 % AI faults, 30 % webhook delivery faults, a worker SIGKILLed, Redis
restarted, PostgreSQL connections terminated, then three provider outages: the key refused,
an overload across the whole retry ladder, the model not found), then it exits 0 with every
check passing (every event delivered, none lost, no bad signature; per outage no record
escalated and no retry spent for it, one page opened and resolved, the fleet resumed within a
probe and a sweep interval), and the shared Redis on 6379 was never restarted: the drill runs
(and restarts, and stops) a redis-server of its own on a free port.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import redis

from tests.fleet import ROOT

pytestmark = pytest.mark.slow

ARGS = [
    "--records=60",
    "--concurrency=2",
    "--lease-ttl-s=8",
    "--sweep-batch=60",
    # Delivery retries 10x faster than the full drill's: the 12th try within ~50 s.
    "--webhook-backoff-scale=0.0002",
    # The retry ladder 4x faster (the overload outage lasts the whole ladder: ~13 s, not
    # ~44 s) and the key refused 12 s, the model not found 6 s (not 60 s and 30 s).
    "--backoff-scale=0.0005",
    "--outage-scale=0.2",
    "--timeout-s=240",
    "--db-name=drill_test",
    "--redis-db=8",
]


def _shared_redis_run_id() -> str | None:
    try:
        return redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2).info("server")["run_id"]
    except redis.RedisError:
        return None


def test_the_short_drill_passes_every_check(tmp_path):
    shared_before = _shared_redis_run_id()
    cmd = [sys.executable, "-m", "enrichment.cli", "drill", "--", *ARGS, f"--run-dir={tmp_path}"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=420)

    table = done.stdout[done.stdout.find("\ncheck ") :]
    assert done.returncode == 0, table or done.stdout[-3000:] + done.stderr[-3000:]
    assert "DRILL PASSED" in done.stdout and " FAIL" not in table
    # It said, before it started, what it drops and restarts: its own redis-server only.
    head = done.stdout[: done.stdout.find("\ncheck ")]
    assert "DROPS and re-creates the PostgreSQL database" in head
    assert "redis-server of its own on a free port (never the one on 6379)" in head
    for fault in ("kill_worker", "restart_redis", "terminate_pg"):
        assert f"{fault}:" in table
    for check in ("events undelivered", "events lost", "deliveries with a bad signature"):
        assert re.search(rf"^{check}.*\s0\s+0\s+PASS$", table, re.M), check
    for outage in ("key_refused", "overload", "model_not_found"):
        assert re.search(rf"^{outage}: provider_down pages .*1 / 1\s+1 / 1\s+PASS$", table, re.M)
        assert re.search(rf"^{outage}: retries spent on a fleet fault\s+0\s+0\s+PASS$", table, re.M)
    assert _shared_redis_run_id() == shared_before  # the same server process: not restarted


def test_a_rabbitmq_drill_says_first_that_it_restarts_the_server():
    from enrichment.tooling.drill import parse_args, what_it_touches

    said = what_it_touches(parse_args(["--broker", "rabbitmq", "--db-name", "d1"]))
    assert "RESTARTS the RabbitMQ server on this machine" in said and "'d1'" in said
