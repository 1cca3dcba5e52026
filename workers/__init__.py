"""The Celery app (`celery -A workers ...`) and its thin tasks."""

from workers.app import app

__all__ = ["app"]
