"""Decisions out: outbox events POSTed to each tenant's webhook (Standard Webhooks), the pull
query, and the action outcomes receivers report back.

`webhooks`: URL checks (SSRF), signing secrets and signatures. `backoff`: the retry
schedule. `deliver`: claim, POST, record. `events`: the pull cursor. `actions`: outcomes.
"""
