"""The benchmark harness measures what it says it measures (no speed is asserted here)."""

import subprocess
import sys
import time
from pathlib import Path

from enrichment.core import db, selection
from enrichment.tooling import bench, processes
from enrichment.tooling.bench import common, fleet, p3_queries
from tests.conftest import REDIS_URL
from tests.factories import make_record, make_tenant


def test_options_scale_every_record_count():
    opts = bench.parse_args(["--scale", "0.01", "--only", "p1,p3"])
    assert opts.only == ("p1", "p3")
    assert (opts.p1_records, opts.p3_records, opts.p4_records) == (20, 10_000, 1_000)


def test_the_table_has_one_line_per_row_and_a_verdict():
    rows = [
        common.Row("P1 x", "10/s", "20/s", "0.50x", ">= 0.60x", False),
        common.Row("P3 y", "1 ms", "1 s", "0.001", "< 1 s", True),
        common.Row("info", "1 s", "-", "-", "info", None),
    ]
    lines = common.format_table(rows).splitlines()
    assert len(lines) == 2 + len(rows)
    assert [line.split("|")[-1].strip() for line in lines[2:]] == ["FAIL", "PASS", "info"]


def test_rss_counts_the_children_of_a_process():
    code = "import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', "
    code += "'import time; x = bytearray(60_000_000); time.sleep(30)']); time.sleep(30)"
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        processes.wait_for(lambda: len(fleet._descendants(parent.pid)) == 2, timeout_s=10, what="x")
        time.sleep(1.0)
        alone = fleet.tree_rss_bytes(parent.pid) - _own_rss(parent.pid)
        assert alone > 50 * common.MB
    finally:
        parent.kill()
        parent.wait()


def _own_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def test_the_claim_is_captured_with_its_parameters_and_explained(
    pg_url, factory, settings, tmp_path
):
    with factory.begin() as s:
        tenant = make_tenant(s)
        for _ in range(3):
            make_record(s, tenant)
    services = common.Services(db_url=pg_url, broker_url=REDIS_URL, out_dir=tmp_path)
    capture = p3_queries.Capture(db.get_engine(pg_url))
    try:
        with p3_queries.rolled_back(services) as s:
            claims = selection.claim_due(s, settings)
    finally:
        capture.close()
    assert len(claims) == 3
    (update,) = [c for c in capture.statements if c.statement.startswith("UPDATE")]
    assert "FOR UPDATE OF exception_records SKIP LOCKED" in update.statement
    assert "Update on exception_records" in p3_queries.explain(services, update)
    with factory() as s:  # both the claim and the EXPLAIN ANALYZE were rolled back
        assert selection.claim_due(s, settings) and s.rollback() is None
