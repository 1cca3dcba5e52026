"""P7 priority: one tenant's `--p7-low` low-severity records ingested first, then
`--p7-critical` critical ones, worked off by the real fleet (local provider).

Target: every critical record terminal before 10 % of the low ones are. The figure is the
share of low records terminal when the last critical one became terminal (from the records'
timestamps).
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from enrichment.tooling.bench.common import (
    Options,
    Row,
    Services,
    reset_data,
    seed_records,
    seed_tenant,
)
from enrichment.tooling.bench.p6_fairness import last_terminal, run_fleet, terminal_by

log = structlog.get_logger(__name__)

TARGET_PCT = 10.0


def bench_p7(services: Services, opts: Options) -> list[Row]:
    reset_data(services)
    tenant = seed_tenant(services, "p7-3pl")
    seed_records(services, tenant, opts.p7_low, prefix="low-", severity="low")
    time.sleep(0.01)  # the critical records are due after every low one
    seed_records(services, tenant, opts.p7_critical, prefix="crit-", severity="critical")
    started = run_fleet(services, opts.p7_pool, opts.p7_low + opts.p7_critical, opts.timeout_s)
    done = last_terminal(services, "severity")
    low_done = terminal_by(services, "severity", "low", done["critical"])
    r: dict[str, Any] = {
        "low_done_pct": 100.0 * low_done / opts.p7_low,
        "critical_done_after_s": (done["critical"] - started).total_seconds(),
        "all_done_after_s": (max(done.values()) - started).total_seconds(),
    }
    log.info("bench.p7.run", **r)
    return [
        Row(
            f"P7 priority: {opts.p7_critical} critical behind {opts.p7_low:,} low ({opts.p7_pool})",
            f"low {r['low_done_pct']:.1f} % done when the last critical finished "
            f"({r['critical_done_after_s']:.1f} s of {r['all_done_after_s']:.1f} s)",
            "-",
            f"{r['low_done_pct'] / 100:.3f}",
            f"< {TARGET_PCT:g} %",
            r["low_done_pct"] < TARGET_PCT,
            r,
        )
    ]
