"""P5 cost per 1,000 records: `--p5-records` records through the fake Anthropic server, once
on the interactive path (chains; the tenant's batch_mode "never") and once by Message Batch
(batch_mode "always"), with the real fleet (workers and beat). Cost is what the attempt rows
recorded: the price table (enrichment/providers/pricing.py) applied to the fake's token
counts, at the batch rate for batch requests. Also per run: the prompt cache hit rate (cached
input tokens over all input tokens), the wall time to drain (first sweep to last terminal
record), and what was lost (records neither enriched nor escalated with a reason: must be 0).
Target: batch mode costs at most 0.55x the interactive path.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog

from enrichment.tooling.bench.common import (
    Options,
    Row,
    Services,
    reset_data,
    seed_records,
    seed_tenant,
    sql,
)
from enrichment.tooling.bench.fleet import start_fake
from enrichment.tooling.bench.p6_fairness import run_fleet

log = structlog.get_logger(__name__)

TARGET = 0.55
# Beat sweeps every 5 s and runs the batches task every 2 s: the drain measures the fleet,
# not the default 60 s intervals.
FLEET_ENV = {
    "ENRICHMENT_AI_PROVIDER": "anthropic",
    "ENRICHMENT_SWEEP_INTERVAL_S": "5",
    "ENRICHMENT_BATCH_INTERVAL_S": "2",
}


def p5_once(services: Services, opts: Options, url: str, mode: str) -> dict[str, Any]:
    """One run with the tenant's batch_mode `mode`; figures from the database."""
    reset_data(services)
    tenant = seed_tenant(services, f"p5-{mode}")
    sql(
        services,
        "UPDATE tenants SET settings = CAST(:s AS JSONB) WHERE id = :id",
        # A day to a person for every severity: critical and high records too may wait in a
        # batch (core/time_to_person.py), so both runs price the same records.
        s=f'{{"batch_mode": "{mode}", "time_to_person_s": {{"critical": 86400, "high": 86400}}}}',
        id=tenant,
    )
    seed_records(services, tenant, opts.p5_records, prefix=f"p5-{mode}-")
    started: datetime = run_fleet(
        services,
        opts.p5_pool,
        opts.p5_records,
        opts.timeout_s,
        ANTHROPIC_BASE_URL=url,
        **FLEET_ENV,
    )
    (usd, cached, inputs, batched, attempts), = sql(
        services,
        "SELECT coalesce(sum(cost_usd), 0), coalesce(sum(cache_read_tokens), 0),"
        " coalesce(sum(input_tokens + cache_write_tokens + cache_read_tokens), 0),"
        " count(*) FILTER (WHERE batch_id IS NOT NULL), count(*) FROM enrichment_attempts",
    )  # fmt: skip
    (enriched, escalated, lost, ended), = sql(
        services,
        "SELECT count(*) FILTER (WHERE enriched_at IS NOT NULL),"
        " count(*) FILTER (WHERE escalated_at IS NOT NULL AND escalation_reason IS NOT NULL),"
        " count(*) FILTER (WHERE enriched_at IS NULL AND (escalated_at IS NULL"
        "   OR escalation_reason IS NULL)),"
        " max(coalesce(enriched_at, escalated_at)) FROM exception_records",
    )  # fmt: skip
    result = {
        "mode": mode,
        "usd_per_1000": float(usd) * 1000.0 / max(enriched, 1),
        "cache_hit_pct": 100.0 * cached / inputs if inputs else 0.0,
        "drain_s": (ended - started).total_seconds(),
        "enriched": enriched,
        "escalated": escalated,
        "lost": lost,
        "attempts": attempts,
        "batch_attempts": batched,
    }
    log.info("bench.p5.run", **result)
    return result


def bench_p5(services: Services, opts: Options) -> list[Row]:
    fake, url = start_fake(services, 0.0)
    try:
        interactive = p5_once(services, opts, url, "never")
        batch = p5_once(services, opts, url, "always")
    finally:
        fake.stop()
    base = interactive["usd_per_1000"]
    ratio = batch["usd_per_1000"] / base if base else float("nan")  # no cost: not measured
    lost = interactive["lost"] + batch["lost"]
    return [
        Row(
            f"P5 cost per 1,000 records, {opts.p5_records:,} records ({opts.p5_pool})",
            f"batch ${batch['usd_per_1000']:.3f} (cache hits {batch['cache_hit_pct']:.0f} %,"
            f" drain {batch['drain_s']:.0f} s); lost {lost}",
            f"interactive ${interactive['usd_per_1000']:.3f} (cache hits"
            f" {interactive['cache_hit_pct']:.0f} %, drain {interactive['drain_s']:.0f} s)",
            f"{ratio:.2f}x",
            f"<= {TARGET}x, nothing lost",
            bool(ratio <= TARGET) and lost == 0,
            {"interactive": interactive, "batch": batch},
        )
    ]
