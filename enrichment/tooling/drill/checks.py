"""The drill's checks, run on the stopped fleet's database, and the result table.

Each `check_*` returns `Check` lines: a figure, what it must be, and whether it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from enrichment.core.models import BACKLOG_SQL
from enrichment.core.outbox import webhook_id
from enrichment.core.settings import MonitorConfig, Settings
from enrichment.core.stages import STAGES, Stage
from enrichment.core.taxonomy import ALLOWED_ACTIONS, Label
from enrichment.metrics.monitor import run_monitor
from enrichment.tooling.drill.faults import CountingFake, Injector
from enrichment.tooling.drill.invariants import LeaseWatch
from enrichment.tooling.drill.setup import BATCH_TENANT, SDK_MAX_RETRIES, DrillConfig, Phases
from enrichment.tooling.receiver import Receiver


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
    completed = " AND ".join(f"enrichment_state->'{st}'->>'status' = 'COMPLETED'" for st in STAGES)
    half = _scalar(
        s,
        "SELECT count(*) FROM exception_records WHERE enriched_at IS NOT NULL"
        f" AND NOT ({completed})",
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
        f"  AND a.stage = '{Stage.CLASSIFY}' AND a.outcome = 'completed'"
        "  AND a.provider = 'anthropic')",
    )
    invalid = _scalar(
        s,
        "SELECT count(*) FROM exception_records WHERE"
        " (ai_label IS NULL) <> (ai_confidence IS NULL)"
        f" OR (ai_label IS NOT NULL AND ai_label NOT IN ('{labels}'))"
        " OR ai_confidence < 0 OR ai_confidence > 1"
        " OR (ai_label IS NOT NULL AND"
        f"     ai_source->'{Stage.CLASSIFY}'->>'provider' IS DISTINCT FROM 'anthropic')",
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
    write an attempt row).

    A fleet fault (the mix's 429, 500, 529 and timeouts left after the SDK's tries, and
    every call of a provider outage) defers the stage without spending a retry, so deferred
    rows are not bounded by the retry budget: the bound is on the rows that completed or
    spent a retry, and deferred rows are shown. The HTTP bound counts the requests outside
    the outages (the calls an outage let through are its own row, outage_checks.py); the
    mix's deferrals add a few there (about 1 % of calls), well inside the bound."""
    limit = 3 * (cfg.max_retries + 1)
    per_record = (
        "SELECT coalesce(max(n), 0) FROM (SELECT count(*) n FROM enrichment_attempts"
        " WHERE outcome IN ({}) GROUP BY record_id) c"
    )
    most = _scalar(s, per_record.format("'completed', 'failed'"))
    deferred = _scalar(s, per_record.format("'deferred'"))
    http_limit = limit * (SDK_MAX_RETRIES + 1)
    http_most = max(fake.per_record.values(), default=0)
    seen = set(fake.per_record).union(*fake.during.values())
    return [
        Check("AI attempts completed or failed (rows) per record, max", most, f"<= {limit}",
              most <= limit),
        Check("AI attempts deferred, no retry spent (rows) per record, max", deferred, "info",
              None),
        Check("HTTP requests to the fake per record outside outages, max", http_most,
              f"<= {http_limit} (x{SDK_MAX_RETRIES + 1} SDK tries)", http_most <= http_limit),
        Check("records seen by the fake", len(seen), "info", None),
    ]  # fmt: skip


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


# Time for the first stage after a recovery: one AI call with its SDK tries (2 s timeout, 3
# tries, 1 s between) plus the workers' and beats' reconnection to the broker, which Celery
# retries at growing intervals (2 s more each time) while it is down: a few seconds after it is
# back.
RECOVERY_SLACK_S = 15.0


def check_recovery(s: Session, cfg: DrillConfig, back_at: datetime | None) -> list[Check]:
    """Seconds from the broker answering again after its restart to the first stage completed
    after it, which must be within one sweep interval plus a stage, not `horizon +
    lease_ttl_s`: on Redis the sweep sees the lost marker and frees every lease at once; on
    RabbitMQ the durable queues kept their messages and the workers reconnect to them."""
    name = f"recovery after the {cfg.broker} restart: first completed stage (s)"
    if back_at is None:
        return [Check(name, "not run", "info", None)]
    first = _scalar(
        s,
        "SELECT min(created_at) FROM enrichment_attempts"
        " WHERE outcome = 'completed' AND created_at > :t",
        t=back_at,
    )
    bound = cfg.sweep_interval_s + RECOVERY_SLACK_S
    if first is None:
        return [Check(name, "none", f"<= {bound:.0f}", False)]
    waited_s = (first - back_at).total_seconds()
    return [Check(name, f"{waited_s:.1f}", f"<= {bound:.0f} (sweep + stage)", waited_s <= bound)]


def pending_events(factory: sessionmaker[Session]) -> int:
    with factory() as s:
        return _scalar(s, "SELECT count(*) FROM outbox_events WHERE status = 'pending'")


# Decisions and the event each must have: (what, decision rows, event type, how they join).
_DECISIONS = (
    ("enriched records", "exception_records d WHERE d.enriched_at IS NOT NULL",
     "record.enriched", "e.record_id = d.id"),
    ("escalated records", "exception_records d WHERE d.escalated_at IS NOT NULL",
     "record.escalated", "e.record_id = d.id"),
    ("actions", "resolution_actions d WHERE true", "action.requested", "e.action_id = d.id"),
)  # fmt: skip


def check_events(s: Session, receiver: Receiver) -> list[Check]:
    """One event per decision, every one delivered and received, none with a bad signature."""
    missing = sum(
        _scalar(s, f"SELECT count(*) FROM {rows} AND NOT EXISTS (SELECT 1 FROM outbox_events e"
                   f" WHERE e.type = '{kind}' AND {join})")
        for _what, rows, kind, join in _DECISIONS
    )  # fmt: skip
    doubled = _scalar(
        s,
        "SELECT count(*) FROM (SELECT 1 FROM outbox_events GROUP BY record_id, type, action_id"
        " HAVING count(*) > 1) d",
    )
    rows = s.execute(text("SELECT id, status, created_at FROM outbox_events")).all()
    by_status = dict(s.execute(text("SELECT status, count(*) FROM outbox_events GROUP BY 1")).all())
    got = receiver.unique_ids()
    unseen = sum(1 for r in rows if r.status == "delivered" and webhook_id(r.id) not in got)
    waits = sorted(
        (receiver.first_at[webhook_id(r.id)] - r.created_at).total_seconds()
        for r in rows
        if webhook_id(r.id) in receiver.first_at
    )
    latency = (
        f"{_quantile(waits, 0.5):.2f} s / {_quantile(waits, 0.95):.2f} s" if waits else "no data"
    )
    undelivered = len(rows) - by_status.get("delivered", 0)
    return [
        Check("events by status", dict(sorted(by_status.items())), "info", None),
        Check("decisions without their event", missing, "0", missing == 0),
        Check("decisions with two events", doubled, "0", doubled == 0),
        Check("events undelivered", undelivered, "0", undelivered == 0),
        Check("events lost (delivered, never received)", unseen, "0", unseen == 0),
        Check("deliveries with a bad signature", receiver.bad_signatures, "0",
              receiver.bad_signatures == 0),
        Check("deliveries cut short (sender killed mid-send)",
              sum(r.answer == "incomplete" for r in receiver.requests), "info", None),
        Check("duplicates with a different body", len(receiver.mismatched), "0",
              not receiver.mismatched),
        Check("duplicate deliveries (same webhook-id)", len(receiver.duplicates), "info", None),
        Check("receiver faults injected", receiver.failures, "info", None),
        Check("decision to 2xx, median / p95", latency, "info", None),
    ]  # fmt: skip


def _quantile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def run_checks(
    cfg: DrillConfig,
    factory,
    fake: CountingFake,
    receiver: Receiver,
    total: int,
    *,
    broker_back_at: datetime | None = None,
    probe_windows: list[tuple[datetime, datetime]] | None = None,
) -> list[Check]:
    settings = Settings(database_url=cfg.db_url, broker_url=cfg.broker_url)
    with factory() as s:
        checks = check_completeness(s, total) + check_provenance(s) + check_actions(s)
        checks += check_ai_calls(s, cfg, fake) + check_info(s, fake) + check_events(s, receiver)
        checks += check_recovery(s, cfg, broker_back_at) + check_batches(s, probe_windows or [])
    return checks + check_monitor(factory, settings)


def check_batches(s: Session, probe_windows: list[tuple[datetime, datetime]]) -> list[Check]:
    """The batch tenant's records went by Message Batch only, at least one batch expired
    whole (its records came back without a retry), and every batch was applied.

    But the breaker's probes: while it is open, the sweep takes any tenant's due record as
    the probe (core/selection.py), the batch tenant's too, and runs its stages as a chain,
    which then goes on (and re-lets) as chains do. So a batch-tenant record with an attempt
    outside a batch in a `probe_windows` span (an outage's start to its breaker closing) is
    a probe's, and shown; any other attempt outside a batch fails the check."""
    by_status = dict(s.execute(text("SELECT status, count(*) FROM batches GROUP BY 1")).all())
    expired = _scalar(s, "SELECT count(*) FROM batches WHERE expired = requests")
    open_ = _scalar(s, "SELECT count(*) FROM batches WHERE status NOT IN ('applied', 'given_up')")
    outside = (
        "SELECT {} FROM enrichment_attempts a JOIN tenants t ON t.id = a.tenant_id"
        " WHERE t.name = :name AND a.batch_id IS NULL"
    )
    probed = (
        outside.format("a.record_id")
        + " AND EXISTS (SELECT 1 FROM unnest(CAST(:starts AS timestamptz[]),"
        " CAST(:ends AS timestamptz[])) w(b, e) WHERE a.created_at BETWEEN w.b AND w.e)"
    )
    row = s.execute(
        text(
            f"SELECT count(*) FILTER (WHERE a.record_id NOT IN ({probed})),"
            f" count(*) FILTER (WHERE a.record_id IN ({probed}))"
            f" FROM ({outside.format('a.record_id')}) a"
        ),
        {
            "name": BATCH_TENANT,
            "starts": [b for b, _ in probe_windows],
            "ends": [e for _, e in probe_windows],
        },
    ).one()
    return [
        Check("Message Batches by status", dict(sorted(by_status.items())), "info", None),
        Check("batches that expired whole", expired, ">= 1", expired >= 1),
        Check("batches not applied", open_, "0", open_ == 0),
        Check(f"{BATCH_TENANT} attempts outside a batch, not a probe's", row[0], "0", row[0] == 0),
        Check(f"{BATCH_TENANT} attempts of records taken as a breaker probe", row[1], "info",
              None),
    ]  # fmt: skip


def check_lease_watch(watch: LeaseWatch) -> list[Check]:
    """The invariant checked on every tick of the run (invariants.py), not only at the end:
    what it saw at any moment, and that it ran at all."""
    ran = f"0 ({watch.ticks} ticks)"
    return [
        Check("records leased past the chain lease, no batch", len(watch.records), ran,
              watch.ticks > 0 and not watch.records),
        Check("batches still submitting past the give-up", len(watch.batches), ran,
              watch.ticks > 0 and not watch.batches),
    ]  # fmt: skip


# ---------------------------------------------------------------- report


def print_table(
    checks: list[Check], phases: Phases, injector: Injector | None, outages: list[str]
) -> None:
    """The table, then the faults injected, the provider outages (`outages.outage_lines`)
    and the phase timings."""
    width = max(len(c.name) for c in checks)
    print(f"\n{'check':<{width}}  {'value':>10}  {'expected':<24} result")
    for c in checks:
        verdict = "-" if c.ok is None else "PASS" if c.ok else "FAIL"
        print(f"{c.name:<{width}}  {str(c.value):>10}  {c.expected:<24} {verdict}")
    print("\nfaults injected:")
    for name, at_s, detail in injector.done if injector else []:
        print(f"  {at_s:7.1f}s  {name}: {detail}")
    print("\nprovider outages:")
    print("\n".join(outages or ["  none"]))
    print("\nphase timings:")
    for name, seconds in phases.seconds.items():
        print(f"  {name:<8} {seconds:8.1f}s")
    print(f"  {'total':<8} {phases.elapsed_s:8.1f}s", flush=True)
