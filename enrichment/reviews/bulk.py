"""Accepting the AI's answer for many queued records at once, with one reason.

Each accepted record is a normal review (decide.submit: its row, events and audit row) of
the AI's label and the actions of its resolution, signed by the reviewer, with the reason as
its note. The caller runs each in a transaction of its own, so one refusal skips that record
only. A record is skipped, with why, when the AI gave no label, when another reviewer holds
it, or when it left the queue meanwhile.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import ValidationError
from sqlalchemy.orm import Session

from enrichment.core import review_claims
from enrichment.core.models import Tenant
from enrichment.reviews import decide, queue

NO_AI_LABEL = "the AI gave no label"


class Skip(decide.ReviewError):
    """Why one record of a bulk accept was left as it was (one line)."""


def ai_actions(resolution: dict | None) -> list[str]:
    """The actions of the AI's resolution (none when it did not resolve the record)."""
    return [str(a) for a in (resolution or {}).get("actions") or []]


def accept_one(
    s: Session,
    tenant: Tenant,
    record_id: int,
    *,
    reviewer: str,
    actor: str,
    note: str,
    now: datetime,
) -> decide.Decided:
    """Accept the AI's answer for one queued record; Skip (or a decide.ReviewError) says why
    not. The caller commits, or rolls back on a refusal."""
    rec = queue.in_queue(s, tenant.id, record_id)
    if rec is None:
        raise Skip("it is no longer waiting for a review")
    if rec.ai_label is None:
        raise Skip(NO_AI_LABEL)
    held = review_claims.taken_by_other(s, tenant.id, rec.id, reviewer, now=now)
    if held is not None:
        raise Skip(f"taken by {held.reviewer} until {held.until:%H:%M} UTC")
    try:
        review = decide.ReviewIn(
            label=rec.ai_label, actions=ai_actions(rec.ai_resolution), note=note, reviewer=reviewer
        )
    except ValidationError:
        raise Skip(f"the AI's answer ({rec.ai_label}) is not one a review can keep") from None
    return decide.submit(s, tenant, rec.id, review, actor=actor, now=now)
