"""Decisions out: pull the outbox events, and report an action's outcome."""

from __future__ import annotations

from fastapi import APIRouter

from enrichment.api.deps import TENANT_RESPONSES

router = APIRouter(responses=TENANT_RESPONSES)
