"""The fault drill, shortened: 60 records, every fault, every check must pass.

Given the drill's own PostgreSQL database and Redis db, when `enrichment drill` runs with 60
records (30 % AI faults, 30 % webhook delivery faults, a worker SIGKILLed, Redis restarted,
PostgreSQL connections terminated), then it exits 0 with every check passing (every event
delivered, none lost, no bad signature), and Redis is running afterwards.

CAUTION: the drill restarts the local Redis server. `make test` runs tests one after another,
so nothing else is using Redis at that moment; the drill starts Redis again whatever happens.
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
    "--timeout-s=150",
    "--db-name=drill_test",
    "--redis-db=8",
]


def test_the_short_drill_passes_every_check(tmp_path):
    cmd = [sys.executable, "-m", "enrichment.cli", "drill", "--", *ARGS, f"--run-dir={tmp_path}"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)

    table = done.stdout[done.stdout.find("\ncheck ") :]
    assert done.returncode == 0, table or done.stdout[-3000:] + done.stderr[-3000:]
    assert "DRILL PASSED" in done.stdout and " FAIL" not in table
    for fault in ("kill_worker", "restart_redis", "terminate_pg"):
        assert f"{fault}:" in table
    for check in ("events undelivered", "events lost", "deliveries with a bad signature"):
        assert re.search(rf"^{check}.*\s0\s+0\s+PASS$", table, re.M), check
    assert redis.Redis(host="127.0.0.1", port=6379).ping()
