"""An action's outcome, reported by the tenant's system after it ran (or failed to run) it.

RECORDED (decided) or DELIVERED (its event got a 2xx) -> DONE or FAILED, once. A tenant that
pulls its events never sees DELIVERED, so an outcome is accepted from either. Reporting the
same outcome again changes nothing and answers as before (receivers retry too); a different
outcome for a reported action is a conflict, and so is one for an action never sent
(AWAITING_APPROVAL or DECLINED: a person's approval comes first).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from enrichment.core.models import (
    AWAITING_APPROVAL,
    DECLINED,
    ExceptionRecord,
    ResolutionAction,
    utcnow,
)

A = ResolutionAction
STATUS_OF = {"done": "DONE", "failed": "FAILED"}
OPEN = ("RECORDED", "DELIVERED")
Outcome = Literal["done", "failed"]


class ActionNotFound(LookupError):
    """No such action for this tenant (another tenant's id looks the same)."""


class OutcomeConflict(Exception):
    """The action already has a different outcome; the message says which."""


class ActionView(BaseModel):
    """An action as the outcome route answers it. `record` is the record's external id."""

    id: int
    record: str
    action: str
    status: str
    note: str | None
    delivered_at: datetime | None
    reported_at: datetime | None


def report_outcome(
    session: Session,
    tenant_id: int,
    action_id: int,
    outcome: Outcome,
    *,
    note: str | None = None,
    now: datetime | None = None,
) -> ActionView:
    """Set the action's outcome, note and reported_at, unless it has one already.

    One conditional UPDATE, so of two concurrent reports exactly one lands. Raises
    ActionNotFound, or OutcomeConflict when the stored outcome differs."""
    status = STATUS_OF[outcome]
    session.execute(
        update(A)
        .where(A.id == action_id, A.tenant_id == tenant_id, A.status.in_(OPEN))
        .values(status=status, note=note, reported_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
    view = load(session, tenant_id, action_id)
    if view is None:
        raise ActionNotFound(f"action {action_id} not found")
    if view.status in (AWAITING_APPROVAL, DECLINED):
        raise OutcomeConflict(
            f"action {action_id} was never sent: it is {view.status.lower()} (a person's "
            "approval comes first)"
        )
    if view.status != status:
        raise OutcomeConflict(
            f"action {action_id} was already reported {view.status.lower()}; "
            "an outcome cannot change"
        )
    return view


def load(session: Session, tenant_id: int, action_id: int) -> ActionView | None:
    """The tenant's action `action_id`, or None (also for another tenant's)."""
    row = session.execute(
        select(A, ExceptionRecord.external_id)
        .join(ExceptionRecord, ExceptionRecord.id == A.record_id)
        .where(A.id == action_id, A.tenant_id == tenant_id)
        .execution_options(populate_existing=True)  # after the UPDATE above
    ).first()
    if row is None:
        return None
    action, external_id = row
    return ActionView(
        id=action.id,
        record=external_id,
        action=action.action,
        status=action.status,
        note=action.note,
        delivered_at=action.delivered_at,
        reported_at=action.reported_at,
    )
