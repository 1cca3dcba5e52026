"""`enrichment webhook test`: one signed `webhook.test` event POSTed to a tenant's webhook
now, through the same checks, signatures and guarded sender as every event.

It is never an outbox event (nothing retries it, the pull route never shows it); it is a
line in the tenant's delivery log, outcome `test`.
"""

from __future__ import annotations

import secrets as random_tokens

from sqlalchemy.orm import Session

from enrichment.core import delivery_log
from enrichment.core.models import Tenant, utcnow
from enrichment.core.outbox import body
from enrichment.core.settings import WebhookConfig
from enrichment.delivery import post, webhooks


class NoWebhook(ValueError):
    """The tenant has no webhook to test (one line for the CLI)."""


def send_test(session: Session, tenant: Tenant, config: WebhookConfig) -> post.Answer:
    """POST a signed `webhook.test` to the tenant's webhook and log the attempt in the
    caller's transaction. Raises NoWebhook when the tenant pulls instead."""
    if not tenant.webhook_url or not tenant.webhook_secret:
        raise NoWebhook(
            f"tenant {tenant.name} has no webhook: set one with "
            f"`enrichment webhook {tenant.name} https://...`"
        )
    now = utcnow()
    keys = webhooks.signing_secrets(
        tenant.webhook_secret, tenant.webhook_previous_secret, tenant.webhook_previous_until, now
    )
    data = {"tenant": tenant.name, "message": "a test from `enrichment webhook test`"}
    msg_id = f"msg_test_{random_tokens.token_hex(8)}"
    answer = post.send(
        tenant.webhook_url, keys, msg_id, body(delivery_log.TEST_EVENT, data, now), config, now=now
    )
    delivery_log.add(
        session, tenant.id, delivery_log.TEST_EVENT, "test", status_code=answer.status,
        error=answer.error, duration_s=answer.duration_s, now=now,
    )  # fmt: skip
    return answer
