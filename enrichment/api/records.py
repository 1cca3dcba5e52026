"""Records in: POST a batch of orders and exceptions (the ingest line format)."""

from __future__ import annotations

from fastapi import APIRouter

from enrichment.api.deps import TENANT_RESPONSES

router = APIRouter(responses=TENANT_RESPONSES)
