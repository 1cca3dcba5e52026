"""The failure kinds. Transient ones are retried on the backoff; permanent ones escalate."""


class EnrichmentError(Exception):
    """Base of every failure the pipeline records."""


class TransientError(EnrichmentError):
    """Worth retrying: timeouts, 429/5xx, an answer that failed validation."""


class InvalidAIOutput(TransientError):
    """The model's answer broke the schema or the allow-list. Never coerced; retried."""


class PermanentError(EnrichmentError):
    """Retrying cannot help (bad credentials, a malformed request): escalate to a person."""


class RateLimited(EnrichmentError):
    """No token from the fleet-wide rate limiter: wait a little, burn no retry."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(f"rate limited, retry in {wait_s:.1f}s")
        self.wait_s = wait_s


class ProviderPaused(EnrichmentError):
    """The provider's breaker is open: the stage did not call it (core/breaker.py)."""

    def __init__(self, cause: str | None) -> None:
        super().__init__(f"provider paused: {cause or 'breaker open'}")
        self.cause = cause
