"""The benchmark harness measures what it says it measures (no speed is asserted here)."""

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from enrichment.core import db, selection
from enrichment.core.models import utcnow
from enrichment.core.settings import RecordLimits, Settings
from enrichment.ingestion.lines import MAX_LINE_BYTES
from enrichment.tooling import bench, processes
from enrichment.tooling.bench import common, fleet, p3_queries, p6_fairness, p8_prompt, p9_api
from tests.conftest import REDIS_URL
from tests.factories import make_record, make_tenant


def test_options_scale_every_record_count():
    opts = bench.parse_args(["--scale", "0.01", "--only", "p1,p3,p5"])
    assert opts.only == ("p1", "p3", "p5") and set(opts.only) <= set(bench.RUNNERS)
    assert (opts.p1_records, opts.p3_records, opts.p4_records) == (20, 10_000, 1_000)
    assert opts.p5_records == 50


def test_fairness_and_priority_sizes_are_flags_and_scale():
    opts = bench.parse_args(
        ["--only", "p6,p7", "--p6-big", "40", "--p6-small", "3", "--p7-low", "30", "--scale", "0.5"]
        + ["--p6-no-fifo", "--p3-tenants", "7"]
    )
    assert opts.only == ("p6", "p7") and set(opts.only) <= set(bench.RUNNERS)
    assert (opts.p6_big, opts.p6_small, opts.p7_low, opts.p7_critical) == (20, 1, 15, 25)
    assert opts.p6_no_fifo and not bench.parse_args([]).p6_no_fifo
    assert opts.p3_tenants == 7 and bench.parse_args([]).only[-4:] == ("p8", "p9", "p10", "p11")
    p11 = bench.parse_args(["--only", "p11", "--p11-orders", "40", "--scale", "0.5"])
    assert (p11.only, p11.p11_orders, p11.p11_speed) == (("p11",), 20, 3600.0)


def test_the_fairness_figure_reads_when_each_group_finished(pg_url, factory, tmp_path):
    # Given a big tenant with 2 of 10 records done before the small tenant's last one, and
    # the rest after; an unfinished record counts for nobody.
    t0 = utcnow()
    with factory.begin() as s:
        big, small = make_tenant(s, "big"), make_tenant(s, "small")
        for i in range(10):
            make_record(s, big, enriched_at=t0 + timedelta(seconds=i * 10))
        make_record(s, small, enriched_at=t0 + timedelta(seconds=5))
        make_record(s, small, escalated_at=t0 + timedelta(seconds=15))
        make_record(s, small)
        big_id, small_id = big.id, small.id
    services = common.Services(db_url=pg_url, broker_url=REDIS_URL, out_dir=tmp_path)
    done = p6_fairness.last_terminal(services, "tenant_id")
    assert done[small_id] == t0 + timedelta(seconds=15)
    assert p6_fairness.terminal_by(services, "tenant_id", big_id, done[small_id]) == 2
    assert p6_fairness.per_min(3, t0, t0 + timedelta(seconds=30)) == 6.0


def test_the_fifo_baseline_is_a_valid_configuration(monkeypatch):
    for name, value in p6_fairness.FIFO_ENV.items():
        monkeypatch.setenv(name, value)
    fifo = Settings.from_env()
    assert (fifo.claim_order, fifo.sweep_batch_size, fifo.sweep_min_batch) == ("fifo", 5000, 5000)


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


def test_cpu_time_is_read_per_process_group():
    groups = fleet.process_groups(me=os.getpid())
    assert os.getpid() in groups["me"] and groups["postgres"] and groups["redis"]
    before = fleet.cpu_s(groups["me"])
    deadline = time.monotonic() + 10
    while fleet.cpu_s(groups["me"]) <= before and time.monotonic() < deadline:
        sum(i * i for i in range(10_000))  # spend CPU until the kernel's tick counts it
    assert fleet.cpu_s(groups["me"]) > before
    assert fleet.cpu_s([2**22 + 7]) == 0  # a process that is gone counts nothing


def test_the_prompt_rows_record_is_the_largest_that_ingestion_accepts():
    # worst_records parses each line with the default limits: it raises if one is refused.
    lines = p8_prompt.worst_records(RecordLimits())
    sizes = [len(json.dumps(line).encode()) for line in lines.values()]
    assert all(0.99 * MAX_LINE_BYTES < size <= MAX_LINE_BYTES for size in sizes)
    keys = lines["most keys"]["order"]["payload"]
    assert len(keys) == RecordLimits().max_keys


def test_the_api_row_counts_every_answer_of_both_tenants(pg_url, factory, tmp_path):
    # Given a short flood (1 s) on the real API served by uvicorn
    opts = bench.parse_args(["--only", "p9", "--p9-clients", "3", "--p9-duration-s", "1"])
    services = common.Services(db_url=pg_url, broker_url=REDIS_URL, out_dir=tmp_path)
    tallies = p9_api.measure(services, opts)
    quiet, flood = tallies["quiet"], tallies["flood"]
    # Then every request is counted once, with its latency; the quiet tenant, sending 20 at
    # most (under the default burst of 60), got only 200s
    assert sum(quiet.codes.values()) == len(quiet.latencies_s) == 20
    assert quiet.codes == {200: 20}
    assert sum(flood.codes.values()) == len(flood.latencies_s) >= 3
    assert set(flood.codes) <= {200, 429}
    p50, p99 = p9_api.percentiles_ms(quiet.latencies_s)
    assert 0 < p50 <= p99 <= max(quiet.latencies_s) * 1000
