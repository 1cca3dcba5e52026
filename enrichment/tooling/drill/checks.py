"""The drill's checks, run on the stopped fleet's database, and the result table.

Each `check_*` returns `Check` lines: a figure, what it must be, and whether it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from enrichment.core.models import BACKLOG_SQL
from enrichment.core.settings import MonitorConfig, Settings
from enrichment.core.taxonomy import ALLOWED_ACTIONS, Label
from enrichment.monitoring.monitor import run_monitor
from enrichment.tooling.drill.faults import CountingFake, Injector
from enrichment.tooling.drill.setup import SDK_MAX_RETRIES, DrillConfig, Phases


@dataclass(frozen=True)
class Check:
    """One line of the result table: a figure, what it must be, and whether it is."""

    name: str
    value: Any
    expected: str
    ok: bool | None  # None: a figure shown for information, not judged


def _scalar(s: Session, sql: str, **params: Any) -> Any:
    return s.execute(text(sql), params).scalar_one()


def check_completeness(s: Session, total: int) -> list[Check]:
    enriched = _scalar(s, "SELECT count(*) FROM exception_records WHERE enriched_at IS NOT NULL")
    escalated = _scalar(
        s,
        "SELECT count(*) FROM exception_records WHERE enriched_at IS NULL"
        " AND escalated_at IS NOT NULL AND coalesce(escalation_reason, '') <> ''",
    )
    leased = _scalar(s, "SELECT count(*) FROM exception_records WHERE lease_token IS NOT NULL")
    half = _scalar(
        s,
        "SELECT count(*) FROM exception_records WHERE enriched_at IS NOT NULL AND NOT ("
        " enrichment_state->'order_analysis'->>'status' = 'COMPLETED'"
        " AND enrichment_state->'classification'->>'status' = 'COMPLETED'"
        " AND enrichment_state->'automation'->>'status' = 'COMPLETED')",
    )
    return [
        Check("records ingested", total, "N", total > 0),
        Check("completed (enriched_at set)", enriched, "info", None),
        Check("escalated with a reason", escalated, "info", None),
        Check(
            "completed + escalated",
            enriched + escalated,
            f"= {total}",
            enriched + escalated == total,
        ),
        Check("records still leased", leased, "0", leased == 0),
        Check("enriched but a stage not COMPLETED", half, "0", half == 0),
    ]


def check_provenance(s: Session) -> list[Check]:
    """Every label/confidence came from a completed, validated anthropic classification."""
    labels = "', '".join(Label)
    orphan = _scalar(
        s,
        "SELECT count(*) FROM exception_records r"
        " WHERE (r.ai_label IS NOT NULL OR r.ai_confidence IS NOT NULL) AND NOT EXISTS ("
        "  SELECT 1 FROM enrichment_attempts a WHERE a.record_id = r.id"
        "  AND a.stage = 'classification' AND a.outcome = 'completed'"
        "  AND a.provider = 'anthropic')",
    )
    invalid = _scalar(
        s,
        "SELECT count(*) FROM exception_records WHERE"
        " (ai_label IS NULL) <> (ai_confidence IS NULL)"
        f" OR (ai_label IS NOT NULL AND ai_label NOT IN ('{labels}'))"
        " OR ai_confidence < 0 OR ai_confidence > 1"
        " OR (ai_label IS NOT NULL AND"
        "     ai_source->'classification'->>'provider' IS DISTINCT FROM 'anthropic')",
    )
    return [
        Check("label/confidence without a completed anthropic attempt", orphan, "0", orphan == 0),
        Check(
            "label outside taxonomy, confidence outside [0,1], or no source",
            invalid,
            "0",
            invalid == 0,
        ),
    ]


def check_actions(s: Session) -> list[Check]:
    twice = _scalar(
        s,
        "SELECT count(*) FROM (SELECT 1 FROM resolution_actions"
        " GROUP BY record_id, action HAVING count(*) > 1) d",
    )
    rows = s.execute(
        text(
            "SELECT ra.action, r.ai_label, r.enriched_at IS NOT NULL FROM resolution_actions ra"
            " JOIN exception_records r ON r.id = ra.record_id"
        )
    ).all()
    bad = sum(
        1
        for action, label, enriched in rows
        if not enriched
        or label not in Label.__members__
        or action not in ALLOWED_ACTIONS[Label(label)]
    )
    return [
        Check("resolution actions recorded", len(rows), "info", None),
        Check("actions recorded twice", twice, "0", twice == 0),
        Check("actions outside the label's allow-list", bad, "0", bad == 0),
    ]


def check_ai_calls(s: Session, cfg: DrillConfig, fake: CountingFake) -> list[Check]:
    """Stage attempts per record (attempt rows), and HTTP requests per record (the fake's
    count, which includes the SDK's own retries and calls whose worker died before it could
    write an attempt row)."""
    limit = 3 * (cfg.max_retries + 1)
    most = _scalar(
        s,
        "SELECT coalesce(max(n), 0) FROM (SELECT count(*) n FROM enrichment_attempts"
        " GROUP BY record_id) c",
    )
    http_limit = limit * (SDK_MAX_RETRIES + 1)
    http_most = max(fake.per_record.values(), default=0)
    return [
        Check("AI attempts (rows) per record, max", most, f"<= {limit}", most <= limit),
        Check(
            "HTTP requests to the fake per record, max",
            http_most,
            f"<= {http_limit} (x{SDK_MAX_RETRIES + 1} SDK tries)",
            http_most <= http_limit,
        ),
        Check("records seen by the fake", len(fake.per_record), "info", None),
    ]


_MONITOR_SQL = (
    "SELECT t.name, count(r.id), count(r.enriched_at), count(r.escalated_at),"
    f" count(*) FILTER (WHERE {BACKLOG_SQL}),"
    " count(r.ai_confidence),"
    " count(*) FILTER (WHERE r.ai_confidence >= t.confidence_threshold)"
    " FROM tenants t JOIN exception_records r ON r.tenant_id = t.id GROUP BY t.name"
)
_MONITOR_FIELDS = (
    "total_records",
    "enriched_records",
    "escalated_records",
    "backlog_records",
    "classified_records",
    "high_confidence_records",
)


def check_monitor(factory: sessionmaker[Session], settings: Settings) -> list[Check]:
    snaps = {snap.tenant: snap for snap in run_monitor(factory, settings, config=MonitorConfig())}
    with factory() as s:
        direct = {row[0]: row[1:] for row in s.execute(text(_MONITOR_SQL))}
    mismatches = [
        f"{tenant}.{name}"
        for tenant, values in direct.items()
        for name, value in zip(_MONITOR_FIELDS, values, strict=True)
        if tenant not in snaps or getattr(snaps[tenant], name) != value
    ]
    return [
        Check(
            "monitor counts that differ from SQL",
            len(mismatches),
            f"0 (of {len(direct) * len(_MONITOR_FIELDS)})",
            not mismatches and len(snaps) == len(direct),
        )
    ]


def check_info(s: Session, fake: CountingFake) -> list[Check]:
    """Figures that show the faults did something (not judged)."""
    outcomes = dict(
        s.execute(text("SELECT outcome, count(*) FROM enrichment_attempts GROUP BY outcome")).all()
    )
    chains = _scalar(s, "SELECT count(DISTINCT lease_token) FROM enrichment_attempts")
    served = ", ".join(f"{k} {v}" for k, v in sorted(fake.kinds.items()))
    return [
        Check("attempt rows by outcome", dict(sorted(outcomes.items())), "info", None),
        Check("claims and re-lets (distinct lease tokens)", chains, "info", None),
        Check("fake answers served", served, "info", None),
    ]


def run_checks(cfg: DrillConfig, factory, fake: CountingFake, total: int) -> list[Check]:
    settings = Settings(database_url=cfg.db_url, broker_url=cfg.broker_url)
    with factory() as s:
        checks = check_completeness(s, total) + check_provenance(s) + check_actions(s)
        checks += check_ai_calls(s, cfg, fake) + check_info(s, fake)
    return checks + check_monitor(factory, settings)


# ---------------------------------------------------------------- report


def print_table(checks: list[Check], phases: Phases, injector: Injector | None) -> None:
    width = max(len(c.name) for c in checks)
    print(f"\n{'check':<{width}}  {'value':>10}  {'expected':<24} result")
    for c in checks:
        verdict = "-" if c.ok is None else "PASS" if c.ok else "FAIL"
        print(f"{c.name:<{width}}  {str(c.value):>10}  {c.expected:<24} {verdict}")
    print("\nfaults injected:")
    for name, at_s, detail in injector.done if injector else []:
        print(f"  {at_s:7.1f}s  {name}: {detail}")
    print("\nphase timings:")
    for name, seconds in phases.seconds.items():
        print(f"  {name:<8} {seconds:8.1f}s")
    print(f"  {'total':<8} {phases.elapsed_s:8.1f}s", flush=True)
