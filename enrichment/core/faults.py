"""Whose fault a failure is: this record's, or the whole fleet's. Decided here, and only here.

A **record fault** (the answer was invalid or a refusal, a 400 or 413 that this record's
content caused) costs the record a retry, and escalates it after the last one.
A **fleet fault** (the key refused, a model gone, a spend cap, an overloaded or failing
provider, a timeout, no connection) says nothing about the record: the stage is recorded as
`deferred`, the lease is given back and the record waits, due, with its retry count as it
was. The provider breaker (core/breaker.py) counts fleet faults and pauses the fleet.

Each failure carries a `cause` (set by the provider that raised it, on the error); a failure
without one (a provider bug, a local fault) is the record's, as before.
"""

from __future__ import annotations

from enum import StrEnum

from enrichment.core.errors import EnrichmentError, RateLimited


class Cause(StrEnum):
    AUTH = "auth"  # 401, or no usable credentials
    PERMISSION = "permission"  # 403
    MODEL_NOT_FOUND = "model_not_found"  # 404
    SPEND_CAP = "spend_cap"  # 429 without retry-after, 402 / billing_error
    RATE_LIMIT = "rate_limit"  # 429 with retry-after, left over after the SDK's retries
    OVERLOAD = "overload"  # 529 / overloaded_error
    SERVER = "server"  # other 5xx / api_error
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    BAD_REQUEST = "bad_request"  # 400 / 422: this record's request, unless most fail alike
    TOO_LARGE = "too_large"  # 413: this record's content
    INVALID_OUTPUT = "invalid_output"  # an answer that broke the schema, or no tool call


# The attempt fault of a stage that never called the provider (its breaker was open).
PAUSED = "paused"

# Retrying cannot help and every record would meet it: open the breaker at once.
HARD = frozenset({Cause.AUTH, Cause.PERMISSION, Cause.MODEL_NOT_FOUND, Cause.SPEND_CAP})
# The provider is struggling: open the breaker on a failure ratio over a minimum volume.
SOFT = frozenset({Cause.RATE_LIMIT, Cause.OVERLOAD, Cause.SERVER, Cause.TIMEOUT, Cause.CONNECTION})
FLEET = HARD | SOFT
# Counted toward the failure ratio too: a broken request shape fails most records with a
# 400, and once the breaker is open on it, a 400 is the fleet's, not the record's.
RATIO = SOFT | {Cause.BAD_REQUEST}

# The cause in plain words, with what to do: the page's text and the status lines.
PLAIN: dict[str, str] = {
    Cause.AUTH: "the API key was refused (401): rotate ANTHROPIC_API_KEY",
    Cause.PERMISSION: "the API key may not use this model (403): check the key's workspace"
    " and ENRICHMENT_ANTHROPIC_MODEL",
    Cause.MODEL_NOT_FOUND: "the model was not found (404): set ENRICHMENT_ANTHROPIC_MODEL to a"
    " current model",
    Cause.SPEND_CAP: "the spend limit or billing stopped the API (429 without retry-after or"
    " 402): raise the limit in the Anthropic console",
    Cause.RATE_LIMIT: "the provider kept answering 429 after its retry-after: lower"
    " ENRICHMENT_AI_RPM or ask for a higher rate limit",
    Cause.OVERLOAD: "the provider is overloaded (529): it resumes by itself; nothing to do",
    Cause.SERVER: "the provider is failing (5xx): it resumes by itself; nothing to do",
    Cause.TIMEOUT: "calls to the provider time out: check its status page and the network",
    Cause.CONNECTION: "the provider cannot be reached: check the network and ANTHROPIC_BASE_URL",
    Cause.BAD_REQUEST: "most requests are refused as malformed (400): a deploy likely broke"
    " the request; roll back",
}


def cause_of(error: EnrichmentError) -> Cause | None:
    """The failure's cause as its provider set it; None when it named none."""
    raw = getattr(error, "cause", None)
    return Cause(raw) if raw in Cause.__members__.values() else None


def is_fleet_fault(error: EnrichmentError, *, breaker_open_on: str | None = None) -> bool:
    """True when the failure is the fleet's, not the record's.

    breaker_open_on: the cause the breaker is open on now, if it is open; a 400 while the
    breaker is open on 400s is the fleet's too. The fleet rate limiter's RateLimited has its
    own path (it burns no retry either) and is not a provider fault."""
    if isinstance(error, RateLimited):
        return False
    cause = cause_of(error)
    if cause in FLEET:
        return True
    return cause is not None and cause == breaker_open_on == Cause.BAD_REQUEST


def with_cause(error: EnrichmentError, cause: Cause) -> EnrichmentError:
    """`error`, marked with its cause (returns it, for `raise with_cause(...)`)."""
    error.cause = str(cause)  # type: ignore[attr-defined]
    return error
