"""Decisions as events: their types, their rows, and the body a receiver gets.

Every new event row is built by `event_row` and inserted by `insert_events`, in the same
statement or transaction as the decision it describes, so neither exists without the other:
the AI's decisions in `stage_write.write` (PostgreSQL: one statement whose rows are SELECTs of
`event_row`'s values; SQLite: one transaction) and a person's in `reviews.decide` (the
review's transaction). Delivery (`enrichment.delivery`) moves a row's status and attempts;
the pull route reads the rows.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Insert, Select, insert

from enrichment.core.models import OutboxEvent

ENRICHED = "record.enriched"
ESCALATED = "record.escalated"
ACTION_REQUESTED = "action.requested"
REVIEWED = "record.reviewed"  # a person decided (label, actions); their actions follow
# The order analysis found a problem (problem, confidence, evidence) and raised `record`.
ORDER_AT_RISK = "order.at_risk"

PENDING, DELIVERED, STOPPED, DEAD = "pending", "delivered", "stopped", "dead"

# The columns a new event fills, in `event_row`'s order (the rest: NULL or the server's).
COLUMNS = (
    "tenant_id", "record_id", "action_id", "type", "data", "status", "attempts",
    "next_delivery_at", "created_at",
)  # fmt: skip


def event_row(
    tenant_id: int,
    record_id: int,
    event_type: str,
    data: dict[str, Any],
    *,
    now: datetime,
    action_id: int | None = None,
) -> dict[str, Any]:
    """A new event's columns: pending, no attempt yet, due for delivery at once (`now`)."""
    values = (tenant_id, record_id, action_id, event_type, data, PENDING, 0, now, now)
    return dict(zip(COLUMNS, values, strict=True))


def insert_events(rows: list[dict[str, Any]] | Select) -> Insert:
    """The INSERT of new events: `event_row`s (ids follow the list's order, so a record's
    events go in decision order), or a SELECT of COLUMNS (PostgreSQL's one-statement write)."""
    if isinstance(rows, Select):
        return insert(OutboxEvent).from_select(COLUMNS, rows)
    return insert(OutboxEvent).values(rows)


def webhook_id(event_id: int) -> str:
    """The Standard Webhooks `webhook-id`: the same on every retry, so receivers dedupe on it."""
    return f"evt_{event_id}"


def envelope(event_type: str, data: dict[str, Any], created_at: datetime) -> dict[str, Any]:
    """The Standard Webhooks payload shape: type, timestamp, data."""
    stamp = created_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return {"type": event_type, "timestamp": stamp, "data": data}


def body(event_type: str, data: dict[str, Any], created_at: datetime) -> str:
    """The exact bytes signed and sent; the same for every attempt of one event."""
    return json.dumps(envelope(event_type, data, created_at), sort_keys=True, separators=(",", ":"))
