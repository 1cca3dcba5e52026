"""`make demo` in a shortened form: the real command, its own processes, the embedded default."""

import os
import re
import subprocess
import sys

import pytest

from tests.fleet import ROOT

pytestmark = pytest.mark.slow


def test_demo_runs_to_completion_on_the_embedded_default(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENRICHMENT_", "ANTHROPIC_"))}
    env.pop("DATABASE_URL", None)
    env.pop("CELERY_BROKER_URL", None)
    env["ENRICHMENT_VAR_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "enrichment.cli", "demo", "--records", "50", "--timeout-s", "150"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert "all 50 records terminal" in out
    row = re.search(r"^demo-3pl\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", out, re.M)
    completed, escalated, pending, retries = map(int, row.groups())
    assert completed + escalated == 50 and pending == 0
    assert completed > escalated
    assert retries > 0  # the demo's injected faults were retried
    assert "worker and beat stopped" in out
    assert (tmp_path / "enrichment.db").exists()
