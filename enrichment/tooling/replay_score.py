"""A replay scored: the problems the fleet raised against the exceptions the tenant raised.

Ground truth is the timeline's exception steps: (order, true label). A raised problem is an
exception record of source `ai_order_analyzer` for the tenant: (its order's external id, its
reason code read as a label: a tenant's exception that attached brought its own words,
which name the same label). Precision: the share of raised problems that the tenant did
raise later; recall: the share of the tenant's exceptions raised first. A problem the tenant
raised before the fleet is not raised at all (core/order_raise.py names it already), so it
counts against recall. Lead time, for each problem raised first: the tenant's exception's
moment on the timeline less the raise's, in timeline hours (the raise's wall time read back
through the replay's `Dating`).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from enrichment.core.models import RAISED_BY_AI, ExceptionRecord, Order
from enrichment.core.taxonomy import reason_label
from enrichment.tooling.replay import Dating, Step


@dataclass(frozen=True)
class Raised:
    order: str
    label: str
    created_at: datetime


@dataclass(frozen=True)
class Score:
    raised: int
    expected: int
    hits: int
    lead_h: list[float]

    @property
    def precision(self) -> float | None:
        return self.hits / self.raised if self.raised else None

    @property
    def recall(self) -> float | None:
        return self.hits / self.expected if self.expected else None

    @property
    def median_lead_h(self) -> float | None:
        return statistics.median(self.lead_h) if self.lead_h else None


def raised_problems(session: Session, tenant_id: int) -> list[Raised]:
    """The problems the order analysis raised for the tenant, in the order raised."""
    rows = session.execute(
        select(Order.external_id, ExceptionRecord.reason_code, ExceptionRecord.created_at)
        .join(Order, Order.id == ExceptionRecord.order_id)
        .where(
            ExceptionRecord.tenant_id == tenant_id,
            Order.tenant_id == tenant_id,
            ExceptionRecord.source == RAISED_BY_AI,
        )
        .order_by(ExceptionRecord.created_at, ExceptionRecord.id)
    )
    # A tenant's exception that attached replaced the reason code with its own words (which
    # name the same label: that is why it attached).
    return [
        Raised(r.external_id, str(reason_label(r.reason_code) or r.reason_code), r.created_at)
        for r in rows
    ]


def expected_problems(steps: list[Step]) -> dict[tuple[str, str], datetime]:
    """(order, true label) -> when the tenant raised it, on the timeline's clock."""
    return {
        (s.order, str(s.body["exception"].get("true_label"))): s.at
        for s in steps
        if s.step == "exception"
    }


def score(steps: list[Step], raised: list[Raised], dating: Dating) -> Score:
    expected = expected_problems(steps)
    lead_h = []
    for problem in raised:
        tenant_at = expected.get((problem.order, problem.label))
        if tenant_at is not None:
            raised_at = dating.t0 + (problem.created_at - dating.start) * dating.speed
            lead_h.append((tenant_at - raised_at).total_seconds() / 3600)
    return Score(len(raised), len(expected), len(lead_h), lead_h)
