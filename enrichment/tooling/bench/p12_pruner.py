"""P12 the pruner (issue 26's P9): rows removed per second by `enrichment prune`, and the
sweep's claim latency while it runs against the same claim with no pruner, in the same run.

The data: P3's records (`--p12-records` over `--p3-tenants` tenants, p3_queries.p3_seed:
the same due set and claim), plus history past the default retention: 3 successful attempts
40 days old per record and one delivered event 10 days old with a delivery-log row. The
pruner is the real command in its own process (`enrichment prune`, default settings: chunks
of ENRICHMENT_PRUNE_CHUNK_ROWS, ENRICHMENT_PRUNE_PAUSE_S between them). The claim is
p3_queries' claim over all tenants (a rolled-back transaction: it leaves no lease), called
back to back: `CLAIM_SAMPLES` times with no pruner, then for as long as the pruner runs, then
`CLAIM_SAMPLES` times again with no pruner (both alone sets are the baseline, so a machine
whose load drifts weighs on both sides).
"""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable
from typing import Any

import structlog

from enrichment.core.settings_retention import RetentionConfig
from enrichment.tooling import processes
from enrichment.tooling.bench.common import Options, Row, Services, reset_data, sql
from enrichment.tooling.bench.p3_queries import p3_queries, p3_seed, rolled_back, vacuum

log = structlog.get_logger(__name__)

CLAIM_SAMPLES = 30  # before the pruner starts, and again after it ended
# The pruner never locks what the claim locks; it shares the CPU and the disk (2 cores here).
TARGET_RATIO = 1.5

_OLD_ATTEMPTS = """
INSERT INTO enrichment_attempts (tenant_id, record_id, stage, outcome, latency_s, provider,
  model, prompt_version, input_tokens, output_tokens, cache_write_tokens, cache_read_tokens,
  cost_usd, created_at)
SELECT r.tenant_id, r.id, s.stage, 'completed', 0.8, 'anthropic', 'claude-haiku-4-5', 'v1',
  500, 80, 0, 400, 0.001, now() - interval '40 days' - (r.id % 86400) * interval '1 second'
FROM exception_records r, (VALUES ('order_analysis'), ('classification'), ('automation')) s(stage)
WHERE r.enriched_at IS NOT NULL
"""
_OLD_EVENTS = """
INSERT INTO outbox_events (tenant_id, record_id, type, data, status, attempts,
  next_delivery_at, delivered_at, created_at)
SELECT tenant_id, id, 'record.enriched', '{}', 'delivered', 1, now() - interval '10 days',
  now() - interval '10 days', now() - interval '10 days' - (id % 86400) * interval '1 second'
FROM exception_records WHERE enriched_at IS NOT NULL
"""
_OLD_LOG = """
INSERT INTO webhook_deliveries (tenant_id, event_id, event_type, at, outcome, status_code,
  duration_ms)
SELECT tenant_id, id, type, delivered_at, 'delivered', 200, 40 FROM outbox_events
"""


def seed(services: Services, opts: Options) -> int:
    """P3's records and old history; returns the rows past retention."""
    p3_seed(services, opts.p12_records, opts.p3_tenants)
    for name, statement in (("attempts", _OLD_ATTEMPTS), ("events", _OLD_EVENTS),
                            ("log", _OLD_LOG)):  # fmt: skip
        started = time.perf_counter()
        sql(services, statement)
        log.info("bench.p12.seeded", table=name, seconds=round(time.perf_counter() - started, 1))
    vacuum(services)
    old = sql(services, "SELECT count(*) FROM enrichment_attempts WHERE created_at < now() - "
              "interval '30 days'")[0][0]  # fmt: skip
    return old + 2 * sql(services, "SELECT count(*) FROM outbox_events")[0][0]


def claim_ms(services: Services, claim: Callable[[Any], None]) -> float:
    """One claim over all tenants, rolled back: wall milliseconds."""
    with rolled_back(services) as s:
        started = time.perf_counter()
        claim(s)
        return (time.perf_counter() - started) * 1000


def pruner_process(services: Services, opts: Options) -> subprocess.Popen:
    log_path = opts.out_dir / "p12_prune.log"
    pause = {} if opts.p12_pause_s is None else {"ENRICHMENT_PRUNE_PAUSE_S": opts.p12_pause_s}
    return subprocess.Popen(
        [str(processes.ROOT / ".venv/bin/enrichment"), "prune"],
        env=services.env(**pause),
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        cwd=processes.ROOT,
    )


def bench_p12(services: Services, opts: Options) -> list[Row]:
    reset_data(services)
    log.info("bench.p12.seeding", records=opts.p12_records, tenants=opts.p3_tenants)
    past = seed(services, opts)
    claim = p3_queries(services)["claim_due (all tenants)"]
    claim_ms(services, claim)  # warm: the plan cache and the connection
    before = [claim_ms(services, claim) for _ in range(CLAIM_SAMPLES)]
    started = time.perf_counter()
    proc = pruner_process(services, opts)
    during = []
    while proc.poll() is None and time.perf_counter() - started < opts.timeout_s:
        during.append(claim_ms(services, claim))
    if proc.poll() is None:
        proc.terminate()
    elapsed = time.perf_counter() - started
    proc.wait(timeout=30)
    # The same claim after it, so a load that drifts during the run weighs on both sides.
    alone = before + [claim_ms(services, claim) for _ in range(CLAIM_SAMPLES)]
    left = sql(services, "SELECT count(*) FROM outbox_events")[0][0]
    removed = past - 2 * left - _old_attempts_left(services)
    pause_s = opts.p12_pause_s or str(RetentionConfig.prune_pause_s)
    return [_row(alone, during, removed=removed, past=past, elapsed_s=elapsed, pause_s=pause_s)]


def _old_attempts_left(services: Services) -> int:
    return sql(services, "SELECT count(*) FROM enrichment_attempts WHERE created_at < now() - "
               "interval '30 days'")[0][0]  # fmt: skip


def _p(values: list[float], q: int) -> float:
    """The q-th percentile (values[0] alone)."""
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _row(alone: list[float], during: list[float], **got: Any) -> Row:
    a50, a95, d50, d95 = _p(alone, 50), _p(alone, 95), _p(during, 50), _p(during, 95)
    rate = got["removed"] / got["elapsed_s"]
    return Row(
        benchmark=f"P12 pruner, pause {got['pause_s']} s",
        figure=f"{rate:,.0f} rows/s ({got['removed']:,} of {got['past']:,} in "
        f"{got['elapsed_s']:.0f} s); claim while pruning p50 {d50:.1f} ms, p95 {d95:.1f} ms",
        reference=f"claim alone p50 {a50:.1f} ms, p95 {a95:.1f} ms",
        ratio=f"{d50 / a50:.2f}x p50, {d95 / a95:.2f}x p95",
        target=f"claim p50 <= {TARGET_RATIO:g}x alone while pruning; all removed",
        ok=d50 <= TARGET_RATIO * a50 and got["removed"] == got["past"],
        data={"alone_ms": alone, "during_ms": during, **got},
    )
