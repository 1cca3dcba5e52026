"""Message Batches on the Anthropic provider's client: create, retrieve, results, cancel.

`AnthropicProvider` holds one `MessageBatches` on its own SDK client (same key, base URL,
timeout and retry guards as the interactive call) and offers its calls as `create_batch`,
`retrieve_batch`, `batch_results` and `cancel_batch`; enrichment/batches drives them.

Every call fails as the interactive call does: an SDK error left after the SDK's own
retries is raised as the pipeline's error kind with its cause (anthropic_errors.py), the
API key scrubbed. A result line comes back as a `BatchResult`; an `errored` one carries the
stage failure it is, with its cause, so a fleet fault reaches the breaker as on the
interactive path (core/faults.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import anthropic
from anthropic.types.messages import MessageBatch

from enrichment.core.errors import EnrichmentError, PermanentError, TransientError
from enrichment.core.faults import Cause, with_cause
from enrichment.providers.anthropic_errors import ERROR_TYPE_CAUSE, map_api_error, non_api_error

__all__ = ["BatchResult", "MessageBatches", "errored"]

T = TypeVar("T")

# Batch error types a retry cannot fix (the request itself is wrong, or not allowed).
_PERMANENT_ERRORS = frozenset(
    {"invalid_request_error", "authentication_error", "permission_error", "not_found_error",
     "request_too_large", "billing_error"}
)  # fmt: skip


@dataclass(frozen=True)
class BatchResult:
    """One line of an ended batch's results.

    type: "succeeded" (`message` is the Message, for `AnthropicProvider.answer`), "errored"
    (`error` is the stage failure, with its cause), "expired" or "canceled" (never run)."""

    custom_id: str
    type: str
    message: Any = None
    error: EnrichmentError | None = None


class MessageBatches:
    """The Message Batches calls on one SDK client; each raises the pipeline's errors."""

    def __init__(self, client: anthropic.Anthropic, api_key: str) -> None:
        self._client = client
        self._api_key = api_key

    def create(self, requests: list[dict[str, Any]]) -> MessageBatch:
        """Send one batch of requests, each {"custom_id", "params"}."""
        return self._call(self._client.messages.batches.create, requests=requests)

    def retrieve(self, batch_id: str) -> MessageBatch:
        """The batch's status and request counts."""
        return self._call(self._client.messages.batches.retrieve, batch_id)

    def results(self, batch_id: str) -> Iterator[BatchResult]:
        """An ended batch's results, streamed: the request is made (and fails) here, the
        lines are read as the iterator is."""
        lines = self._call(self._client.messages.batches.results, batch_id)
        return (_result(line) for line in lines)

    def cancel(self, batch_id: str) -> MessageBatch:
        """Ask the API to cancel the batch; what it already ran is still billed."""
        return self._call(self._client.messages.batches.cancel, batch_id)

    def _call(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        # Mapped as AnthropicProvider._send maps the interactive call's errors.
        try:
            return method(*args, **kwargs)
        except anthropic.APIError as exc:
            error = map_api_error(exc, self._api_key)
        except anthropic.AnthropicError as exc:  # e.g. an ended batch without a results URL
            error = non_api_error(exc, self._api_key)
        raise error


def _result(line: Any) -> BatchResult:
    result = line.result
    if result.type == "succeeded":
        return BatchResult(line.custom_id, result.type, message=result.message)
    if result.type == "errored":
        return BatchResult(line.custom_id, result.type, error=errored(result.error))
    return BatchResult(line.custom_id, result.type)


def errored(error: Any) -> EnrichmentError:
    """An `errored` result as the stage failure it is (its ErrorResponse body), with its
    cause: a fleet fault (a refused key, an overload) defers the record and counts toward
    the breaker, as on the interactive path (core/faults.py)."""
    inner = getattr(error, "error", None)
    kind = getattr(inner, "type", None) or "api_error"
    message = f"batch request errored: {kind}: {getattr(inner, 'message', '')}"[:500]
    failure = PermanentError(message) if kind in _PERMANENT_ERRORS else TransientError(message)
    return with_cause(failure, ERROR_TYPE_CAUSE.get(kind, Cause.SERVER))
