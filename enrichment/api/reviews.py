"""The review queue over the API: list it, decide a record, or hand it back to the AI."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
