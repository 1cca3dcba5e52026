"""Every record's story: its fields, stages, attempts, actions, events and escalation."""

from __future__ import annotations

from fastapi import APIRouter

from enrichment.api.deps import TENANT_RESPONSES

router = APIRouter(responses=TENANT_RESPONSES)
