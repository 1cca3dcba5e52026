"""How often the monitor evaluates each tenant: faster while a warning fires for it.

Beat runs `enrichment.monitor` every tick = ENRICHMENT_MONITOR_INTERVAL_S /
ENRICHMENT_MONITOR_WARNING_DIVISOR (300 / 3 = 100 s). Each run evaluates only the tenants that
are due: a tenant is due when its latest snapshot is at least its period less half a tick old,
where the period is one tick while a warning of the tenant is firing, else the interval. With
one beat that is every tick for a warned tenant and every third tick for the others; the half
tick absorbs the lateness of a run.

Two beats (or a run that overlaps the next) cannot evaluate a tenant twice: `run_monitor`
locks the tenant rows and reads the latest snapshot after it holds the lock, so concurrent
runs take turns and the second finds the first one's snapshot; and no two snapshots of a
tenant are ever closer than half its period. Ticks of two beats interleave, yet in steady
state the tenant is evaluated once per period, by whichever beat's tick comes first after it
is due (README "Monitoring").
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from enrichment.alerting.alerts import WARNING
from enrichment.core.monitor_models import Alert
from enrichment.core.settings import Settings


@dataclass(frozen=True)
class Pace:
    """The monitor's pacing: the normal interval and its divisor while a warning fires."""

    interval_s: float
    warning_divisor: float

    @classmethod
    def of(cls, settings: Settings) -> Pace:
        return cls(settings.monitor.interval_s, settings.routing.warning_divisor)

    @property
    def tick_s(self) -> float:
        """Beat's monitor period: the warned tenants' period."""
        return self.interval_s / self.warning_divisor

    def min_gap_s(self, *, warned: bool) -> float:
        """How old a tenant's latest snapshot must be before its next evaluation."""
        return (self.tick_s if warned else self.interval_s) - self.tick_s / 2

    def gaps(self, session: Session, tenant_ids: list[int]) -> dict[int, float]:
        """Each tenant's minimum gap for this run (read under the tenant locks)."""
        fast = warned(session, tenant_ids)
        return {tid: self.min_gap_s(warned=tid in fast) for tid in tenant_ids}


def warned(session: Session, tenant_ids: list[int]) -> set[int]:
    """The tenants with a firing warning (an inhibited or silenced one counts: the speed-up
    is about watching, not about telling)."""
    if not tenant_ids:
        return set()
    rows = session.scalars(
        select(Alert.tenant_id)
        .where(Alert.tenant_id.in_(tenant_ids), Alert.severity == WARNING, Alert.state == "firing")
        .distinct()
    )
    return set(rows)
