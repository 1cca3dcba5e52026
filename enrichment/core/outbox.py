"""Decisions as events: their types, their data, and the body a receiver gets.

An event row is written by the same statement (PostgreSQL) or transaction (SQLite) as the
decision it describes (`pipeline.write`), so neither exists without the other. Delivery
(`enrichment.delivery`) and the pull route read these rows; nothing else writes them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

ENRICHED = "record.enriched"
ESCALATED = "record.escalated"
ACTION_REQUESTED = "action.requested"
REVIEWED = "record.reviewed"  # a person decided (label, actions); their actions follow

PENDING, DELIVERED, STOPPED, DEAD = "pending", "delivered", "stopped", "dead"


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
