"""The review page for people: sign in with the reviewer key, work the queue, decide."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
