"""The HTTP API (`uvicorn enrichment.api:app`): one router module per concern, assembled in
`app.py`; authentication and shared dependencies in `deps.py`."""

from enrichment.api.app import app

__all__ = ["app"]
