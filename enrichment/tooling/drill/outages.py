"""The drill's provider outages: the fake Anthropic server answers every call with one error
for a while, then heals (back to its usual 30 % mix), and the fleet must wait them out.

In order, after the other faults (a worker killed, the broker restarted, PostgreSQL's
connections terminated):

- key_refused: every call 401 for 60 s (x `outage_scale`), then the key works again;
- overload: every call 529 for the whole retry ladder (1m/5m/15m/1h/4h at the drill's
  backoff scale, with its jitter) and 2 s more: had an overload cost retries, every record
  called during it would have escalated by its end;
- model_not_found: every call 404 for 30 s (x `outage_scale`); then healthy to the end.

Each starts at its progress mark (a share of terminal records) once the previous one is over:
healed, its breaker closed and its page resolved (or SETTLE_TIMEOUT_S passed; the checks then
show what was missing). An outage holds the run: nothing completes while the provider
refuses every call, so it lasts a fixed time from its start. When fewer than MIN_WAITING
records of the chain tenants are still open at its start (the 60-record drill can be nearly
done by then, or have only the batch tenant's left), new records arrive for them first,
through the real ingestion, as they would while a provider is down: an outage with nothing
waiting would show nothing, and one only batch results meet opens no breaker (they are not
counted: core/breaker_store.py).

`TimedPagerDuty` is the local PagerDuty receiver the fleet pages (PAGERDUTY_ROUTING_KEY and
ENRICHMENT_PAGERDUTY_URL in `setup.fleet_env`), with the time of every event it accepted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from enrichment.alerting.provider_page import METRIC
from enrichment.core.backoff import RETRY_STEPS_S
from enrichment.core.models import utcnow
from enrichment.tooling.drill.faults import CountingFake
from enrichment.tooling.drill.setup import CHAIN_TENANTS, DrillConfig, Phases, ingest_records
from enrichment.tooling.fake_faults import parse_faults
from enrichment.tooling.pagerduty_receiver import PagerDutyReceiver
from enrichment.tooling.progress import Progress

log = structlog.get_logger(__name__)

PAGE_KEY_PREFIX = f"enrichment/fleet/{METRIC}/"
BACKOFF_JITTER = 0.1  # Settings.backoff_jitter's default: a retry fires by 110 % of its step
LADDER_MARGIN_S = 2.0
MIN_WAITING = 10  # chain tenants' open records an outage needs at its start
OPEN_CHAIN_SQL = (
    "SELECT count(*) FROM exception_records r JOIN tenants t ON t.id = r.tenant_id"
    " WHERE t.name = ANY(:names) AND r.enriched_at IS NULL AND r.escalated_at IS NULL"
)
SETTLE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Outage:
    """One scheduled outage: every call gets fault `kind` for `duration_s` from its start."""

    name: str
    kind: str
    mark: float  # share of terminal records from which it may start
    duration_s: float


@dataclass
class OutageRun:
    """One outage as it ran: when (UTC, and drill seconds), and what waited for it."""

    outage: Outage
    started_at: datetime
    started_s: float
    waiting: int  # records not terminal at its start, arrivals included
    arrived: int
    healed_at: datetime | None = None
    healed_s: float | None = None
    settled_s: float | None = None  # drill seconds when its breaker closed and page resolved
    settled_at: datetime | None = None


def ladder_s(backoff_scale: float) -> float:
    """The whole retry ladder at `backoff_scale`, at its longest (jitter included)."""
    return sum(RETRY_STEPS_S) * backoff_scale * (1 + BACKOFF_JITTER)


def plan(cfg: DrillConfig) -> list[Outage]:
    return [
        Outage("key_refused", "401", 0.60, 60.0 * cfg.outage_scale),
        Outage("overload", "529", 0.65, ladder_s(cfg.backoff_scale) + LADDER_MARGIN_S),
        Outage("model_not_found", "404", 0.70, 30.0 * cfg.outage_scale),
    ]


class TimedPagerDuty(PagerDutyReceiver):
    """The local PagerDuty receiver, noting (UTC time, action, dedup key, whether it opened
    or closed an alert) for every event it accepted; a trigger for an alert already open and
    a resolve with none open change nothing at PagerDuty, so they do not count as pages."""

    def __init__(self) -> None:
        super().__init__()
        self.timeline: list[tuple[datetime, str, str, bool]] = []

    def _accept(self, event: dict[str, Any], key: str) -> None:
        before = self.alerts.get(key)
        super()._accept(event, key)
        with self._lock:
            changed = self.alerts.get(key) != before
            self.timeline.append((utcnow(), event["event_action"], key, changed))

    def provider_down_open(self) -> bool:
        return any(key.startswith(PAGE_KEY_PREFIX) for key in self.open_alerts())


class Outages:
    """Runs the plan from the run loop's tick, one outage at a time."""

    def __init__(
        self,
        cfg: DrillConfig,
        fake: CountingFake,
        pagerduty: TimedPagerDuty,
        factory: sessionmaker[Session],
        phases: Phases,
    ) -> None:
        self.cfg, self.fake, self.pagerduty = cfg, fake, pagerduty
        self.factory, self.phases = factory, phases
        self.healthy = dict(fake.faults)
        self.pending = plan(cfg)
        self.runs: list[OutageRun] = []
        self.current: OutageRun | None = None

    @property
    def busy(self) -> bool:
        """An outage is still to start, running, or not over yet (the run must go on)."""
        return bool(self.pending) or self.current is not None or not self._settled()

    def probe_windows(self) -> list[tuple[datetime, datetime]]:
        """(start, over) of every outage: while its breaker may have taken probes."""
        return [(r.started_at, r.settled_at or utcnow()) for r in self.runs]

    @property
    def arrived(self) -> int:
        return sum(run.arrived for run in self.runs)

    def tick(self, p: Progress, say: Callable[[str], None]) -> None:
        """Heal the running outage when its time is up; start the next one when the previous
        is over and the progress has passed its mark."""
        if self.current is not None:
            if self.phases.elapsed_s - self.current.started_s >= self.current.outage.duration_s:
                self._heal(say)
            return
        if not self.pending or not self._settled():
            return
        if p.total and p.terminal / p.total >= self.pending[0].mark:
            self._start(self.pending[0], p, say)

    def _start(self, outage: Outage, p: Progress, say: Callable[[str], None]) -> None:
        try:
            arrived = self._arrivals(outage)
        except Exception as exc:  # the database is briefly unreachable: the next tick
            log.warning("drill.arrivals_failed", outage=outage.name, error=repr(exc))
            return
        waiting = p.open + arrived
        self.pending.remove(outage)
        self.fake.outage = outage.name  # count its calls apart first, then refuse them
        self.fake.faults = parse_faults(f"{outage.kind}=1")
        run = OutageRun(outage, utcnow(), self.phases.elapsed_s, waiting, arrived)
        self.runs.append(run)
        self.current = run
        say(
            f"   outage {outage.name} at {run.started_s:.1f}s: every call {outage.kind} for"
            f" {outage.duration_s:.0f}s; {waiting} records waiting ({arrived} arrived)"
        )

    def _arrivals(self, outage: Outage) -> int:
        """New records for the chain tenants when fewer than MIN_WAITING of theirs are open:
        the breaker counts interactive calls only (a Message Batch result tells of the
        provider's past), so an outage that only the batch tenant's records wait through
        would open no breaker and page no one."""
        with self.factory() as s:
            open_ = s.execute(text(OPEN_CHAIN_SQL), {"names": list(CHAIN_TENANTS)}).scalar_one()
        if open_ >= MIN_WAITING:
            return 0
        tag = f"-{outage.name}"
        count = MIN_WAITING - open_
        return ingest_records(self.cfg, self.factory, count, tag=tag, tenants=CHAIN_TENANTS)

    def _heal(self, say: Callable[[str], None]) -> None:
        self.fake.faults = dict(self.healthy)
        self.fake.outage = None
        run, self.current = self.current, None
        run.healed_at, run.healed_s = utcnow(), self.phases.elapsed_s
        say(f"   healed {run.outage.name} at {self.phases.elapsed_s:.1f}s")

    def _settled(self) -> bool:
        """The last outage is over: its breaker closed and its page resolved, or it had
        SETTLE_TIMEOUT_S to get there."""
        if not self.runs or self.runs[-1].settled_s is not None:
            return True
        run, now_s = self.runs[-1], self.phases.elapsed_s
        if run.healed_s is None:
            return False
        if now_s - run.healed_s < SETTLE_TIMEOUT_S and (
            not self._breakers_closed() or self.pagerduty.provider_down_open()
        ):
            return False
        run.settled_s, run.settled_at = now_s, utcnow()
        return True

    def _breakers_closed(self) -> bool:
        try:
            with self.factory() as s:
                sql = "SELECT count(*) FROM provider_breakers WHERE state <> 'closed'"
                return s.execute(text(sql)).scalar_one() == 0
        except Exception:  # the database is briefly unreachable: ask again next tick
            return False


def outage_lines(outages: Outages | None) -> list[str]:
    """The outages as they ran, for the report under the result table."""
    lines = []
    for run in outages.runs if outages else []:
        o = run.outage
        settled = f", over at {run.settled_s:.1f}s" if run.settled_s is not None else ""
        lines.append(
            f"  {run.started_s:7.1f}s  {o.name}: every call {o.kind} for {o.duration_s:.0f}s,"
            f" {run.waiting} records waiting ({run.arrived} arrived){settled}"
        )
    return lines
