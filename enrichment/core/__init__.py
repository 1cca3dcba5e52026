"""The record's life: tables, stage transitions, backoff, claims and leases, one stage's run.

The bottom layer: it imports nothing else from `enrichment`, and no Celery.
"""
