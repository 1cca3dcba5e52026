"""The provider outages' rows of the result table (outages.py runs them).

Per outage, over its window (from its start to the next one's, or to the end of the run):
the records waiting at its start (> 0: an outage with nothing waiting shows nothing), the
records escalated for a fleet fault and the retries spent on one (0: a fleet fault defers
the record, core/faults.py), the provider_down pages it opened and resolved (1 and 1), the
resume (seconds from the heal to the first completed stage after it: at most one probe
interval plus one sweep interval, plus one stage), and the calls the fake received during
it (shown, not judged: the breaker's probes, and the calls in flight when it opened).
Then the same two counts and the pages over the whole run, which the healthy 30 % mix's
429, 500, 529 and timeouts (fleet faults too) must not have cost a retry either.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from enrichment.core.faults import FLEET
from enrichment.tooling.drill.checks import Check
from enrichment.tooling.drill.outages import PAGE_KEY_PREFIX, OutageRun, Outages, TimedPagerDuty
from enrichment.tooling.drill.setup import (
    AI_TIMEOUT_S,
    SDK_MAX_RETRIES,
    SDK_RETRY_WAIT_S,
    DrillConfig,
)

FLEET_FAULTS = sorted(FLEET)
# What a fleet fault's error says in an escalation reason (providers/anthropic_errors.py):
# a 401-404, a 429 or a 5xx status, a timeout, no connection.
FLEET_REASON = r"anthropic (40[1-4]|429|5[0-9][0-9]) |timed out|connection error"
# The message from the sweep to a worker, and the attempt row's commit: well under 1 s here.
QUEUE_S = 1.0


def stage_s() -> float:
    """One stage at its slowest without failing: every SDK try timing out but the last,
    with the SDK's waits between them."""
    return (SDK_MAX_RETRIES + 1) * AI_TIMEOUT_S + SDK_MAX_RETRIES * SDK_RETRY_WAIT_S + QUEUE_S


def resume_bound_s(cfg: DrillConfig) -> float:
    """The longest probe interval (the breaker's, when the heal comes just after a failed
    probe), then the sweep that claims the probe, then its stage (`stage_s`): the mix is
    back after a heal, so the probe's first try may time out."""
    return cfg.probe_max_s + cfg.sweep_interval_s + stage_s()


def _scalar(s: Session, sql: str, **params: Any) -> Any:
    return s.execute(text(sql), params).scalar_one()


def escalated_for_fleet(s: Session, since: datetime, until: datetime) -> int:
    """Records escalated in [since, until) whose reason names a fleet fault, or whose last
    failed attempt had one."""
    return _scalar(
        s,
        "SELECT count(*) FROM exception_records r"
        " WHERE r.escalated_at >= :since AND r.escalated_at < :until"
        " AND (r.escalation_reason ~ :reason OR (SELECT a.fault FROM enrichment_attempts a"
        "  WHERE a.record_id = r.id AND a.outcome = 'failed'"
        "  ORDER BY a.created_at DESC LIMIT 1) = ANY(:fleet))",
        since=since,
        until=until,
        reason=FLEET_REASON,
        fleet=FLEET_FAULTS,
    )


def retries_on_fleet(s: Session, since: datetime, until: datetime) -> int:
    """Attempts in [since, until) that spent a retry ('failed') on a fleet fault."""
    return _scalar(
        s,
        "SELECT count(*) FROM enrichment_attempts WHERE outcome = 'failed'"
        " AND fault = ANY(:fleet) AND created_at >= :since AND created_at < :until",
        since=since,
        until=until,
        fleet=FLEET_FAULTS,
    )


def first_completed_after(s: Session, healed_at: datetime) -> datetime | None:
    """The first stage completed after `healed_at`, not counting results of a Message
    Batch created before it (the fake drew those answers while it was still healthy)."""
    return _scalar(
        s,
        "SELECT min(a.created_at) FROM enrichment_attempts a"
        " LEFT JOIN batches b ON b.id = a.batch_id"
        " WHERE a.outcome = 'completed' AND a.created_at > :healed"
        " AND (a.batch_id IS NULL OR b.created_at > :healed)",
        healed=healed_at,
    )


def pages(pd: TimedPagerDuty, since: datetime, until: datetime) -> tuple[int, int]:
    """(provider_down alerts opened, resolved) in [since, until)."""
    got = Counter(
        action
        for at, action, key, changed in pd.timeline
        if changed and key.startswith(PAGE_KEY_PREFIX) and since <= at < until
    )
    return got["trigger"], got["resolve"]


def check_outage(s: Session, outages: Outages, run: OutageRun, until: datetime) -> list[Check]:
    """One outage's rows, over [its start, `until`)."""
    fake, pd = outages.fake, outages.pagerduty
    name, since = run.outage.name, run.started_at
    escalated = escalated_for_fleet(s, since, until)
    retries = retries_on_fleet(s, since, until)
    opened, resolved = pages(pd, since, until)
    calls = fake.during.get(name, Counter())
    most = max(calls.values(), default=0)
    return [
        Check(f"{name}: records waiting at its start", f"{run.waiting} ({run.arrived} new)",
              "> 0", run.waiting > 0),
        Check(f"{name}: records escalated for a fleet fault", escalated, "0", escalated == 0),
        Check(f"{name}: retries spent on a fleet fault", retries, "0", retries == 0),
        Check(f"{name}: provider_down pages opened / resolved", f"{opened} / {resolved}",
              "1 / 1", opened == resolved == 1),
        _resume(s, outages.cfg, run),
        Check(f"{name}: calls to the fake during it (most for one record)",
              f"{sum(calls.values())} ({most})", f"info, {run.waiting} waiting", None),
    ]  # fmt: skip


def _resume(s: Session, cfg: DrillConfig, run: OutageRun) -> Check:
    name = f"{run.outage.name}: resume after the heal, first completed stage (s)"
    bound = resume_bound_s(cfg)
    expected = f"<= {bound:.0f} (probe+sweep+stage)"
    if run.healed_at is None:
        return Check(name, "not healed", expected, False)
    first = first_completed_after(s, run.healed_at)
    if first is None:
        return Check(name, "none", expected, False)
    waited_s = (first - run.healed_at).total_seconds()
    return Check(name, f"{waited_s:.1f}", expected, waited_s <= bound)


def check_outages(s: Session, outages: Outages) -> list[Check]:
    """Every outage's rows, then the whole run's."""
    runs, checks = outages.runs, []
    end = datetime.now(UTC) + timedelta(days=1)
    for run, until in zip(runs, [r.started_at for r in runs[1:]] + [end], strict=True):
        checks += check_outage(s, outages, run, until)
    if outages.pending:
        checks.append(Check("outages not run", len(outages.pending), "0", False))
    return checks + check_whole_run(s, len(runs), outages.pagerduty)


def check_whole_run(s: Session, outages: int, pd: TimedPagerDuty) -> list[Check]:
    start, end = datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(days=1)
    escalated = escalated_for_fleet(s, start, end)
    retries = retries_on_fleet(s, start, end)
    opened, resolved = pages(pd, start, end)
    sent = Counter(a for _, a, key, _ in pd.timeline if key.startswith(PAGE_KEY_PREFIX))
    others = sum(1 for *_, key, _ in pd.timeline if not key.startswith(PAGE_KEY_PREFIX))
    return [
        Check("records escalated for a fleet fault, whole run", escalated, "0", escalated == 0),
        Check("retries spent on a fleet fault, whole run", retries, "0", retries == 0),
        Check("provider_down pages opened / resolved, whole run", f"{opened} / {resolved}",
              f"{outages} / {outages}", opened == resolved == outages),
        Check("provider_down events sent (trigger / resolve)",
              f"{sent['trigger']} / {sent['resolve']}", "info", None),
        Check("other PagerDuty events (tenant alerts)", others, "info", None),
    ]  # fmt: skip
