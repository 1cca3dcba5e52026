"""The Anthropic SDK's errors as the pipeline's: each with its kind (transient or permanent)
and its cause (core/faults.py decides whose fault that is). The API key never reaches a
message, whatever echoed it."""

from __future__ import annotations

from typing import Any

import anthropic

from enrichment.core.errors import EnrichmentError, InvalidAIOutput, PermanentError, TransientError
from enrichment.core.faults import Cause, with_cause

# Status codes where a retry cannot help, and whose fault each is (core/faults.py): 402 is
# billing, 422 a request the API cannot use.
_STATUS_CAUSE = {
    400: Cause.BAD_REQUEST,
    401: Cause.AUTH,
    402: Cause.SPEND_CAP,
    403: Cause.PERMISSION,
    404: Cause.MODEL_NOT_FOUND,
    413: Cause.TOO_LARGE,
    422: Cause.BAD_REQUEST,
}
# error.type of a batch request's `errored` result -> its cause (the same kinds as statuses).
ERROR_TYPE_CAUSE = {
    "invalid_request_error": Cause.BAD_REQUEST,
    "request_too_large": Cause.TOO_LARGE,
    "authentication_error": Cause.AUTH,
    "permission_error": Cause.PERMISSION,
    "not_found_error": Cause.MODEL_NOT_FOUND,
    "billing_error": Cause.SPEND_CAP,
    "rate_limit_error": Cause.RATE_LIMIT,
    "overloaded_error": Cause.OVERLOAD,
    "api_error": Cause.SERVER,
    "timeout_error": Cause.TIMEOUT,
}


def has_retry_after(headers: Any) -> bool:
    return "retry-after" in headers or "retry-after-ms" in headers


def map_api_error(exc: anthropic.APIError, api_key: str) -> EnrichmentError:
    """The pipeline's error kind for an SDK error left after the SDK's own retries, marked
    with its cause (core/faults.py decides whose fault that is)."""
    if isinstance(exc, anthropic.APIStatusError):
        return _status_error(exc, api_key)
    if isinstance(exc, anthropic.APIResponseValidationError):
        error = InvalidAIOutput(_scrub(f"response did not match the API schema: {exc}", api_key))
        return with_cause(error, Cause.INVALID_OUTPUT)
    if isinstance(exc, anthropic.APITimeoutError):
        return with_cause(TransientError("anthropic request timed out"), Cause.TIMEOUT)
    if isinstance(exc, anthropic.APIConnectionError):
        text = _scrub(f"anthropic connection error: {type(exc.__cause__).__name__}", api_key)
        return with_cause(TransientError(text), Cause.CONNECTION)
    return TransientError(_scrub(f"anthropic error: {exc.message}", api_key))


def _status_error(exc: anthropic.APIStatusError, api_key: str) -> EnrichmentError:
    """The message is stable, groupable text (an escalation reason); the request id goes on
    the error (`request_id`) and from there into the attempt row only."""
    status = exc.status_code
    kind, detail = _error_body(exc.body)
    text = _scrub(f"anthropic {status} {kind}: {detail[:300]}", api_key)
    # A 429 without retry-after is a spend cap, not a rate limit: waiting will not lift it.
    if status == 429:
        cause = Cause.RATE_LIMIT if has_retry_after(exc.response.headers) else Cause.SPEND_CAP
    elif status in _STATUS_CAUSE:
        cause = _STATUS_CAUSE[status]
    else:
        cause = ERROR_TYPE_CAUSE.get(kind, Cause.SERVER)
    permanent = status in _STATUS_CAUSE or cause == Cause.SPEND_CAP
    error = (PermanentError if permanent else TransientError)(text)
    error.request_id = exc.response.headers.get("request-id")  # type: ignore[attr-defined]
    return with_cause(error, cause)


def _error_body(body: object) -> tuple[str, str]:
    """(error.type, error.message) from an error body; read by hand to work on SDK 1.x too."""
    error = body.get("error", body) if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "error", str(body or "")
    return str(error.get("type") or "error"), str(error.get("message") or "")


def non_api_error(exc: anthropic.AnthropicError, api_key: str) -> EnrichmentError:
    text = _scrub(f"anthropic {type(exc).__name__}: {exc}", api_key)
    if isinstance(exc, anthropic.CredentialsError):
        return with_cause(PermanentError(text), Cause.AUTH)
    return TransientError(text)


def _scrub(text: str, api_key: str) -> str:
    """`text` without the API key, whatever echoed it (a proxy, a URL, a debug message)."""
    return text.replace(api_key, "[API_KEY]") if api_key else text
