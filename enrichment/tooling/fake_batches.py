"""The Message Batches API of the fake Anthropic server (`fake_anthropic.FakeAnthropic`).

Wire format as the real API and the SDK (anthropic 2.x) have it:
    POST   /v1/messages/batches               {requests: [{custom_id, params}]} -> batch
    GET    /v1/messages/batches               ?limit&after_id&before_id, newest first
    GET    /v1/messages/batches/{id}          the batch
    POST   /v1/messages/batches/{id}/cancel   in_progress -> canceling
    DELETE /v1/messages/batches/{id}          only once ended
    GET    /v1/messages/batches/{id}/results  JSONL, one {custom_id, result} a line
A batch is in_progress for `delay_s` after creation, then ended (worked out on each read, on
the fake's clock). Every request is answered when the batch is created, through the fake's
`respond`, exactly as if it had been sent alone (same fault draw, same answer, same prompt
cache), so `respond` sees each batched request once; the answers show once the batch ends.
The fake's assumptions where the docs say nothing: a cancel before the end cancels every
request (the batch stays "canceling" until its end time); an expired batch (drawn per batch
at `expire_rate`) ends with every request expired; cancelling an ended batch, deleting or
reading the results of one that has not ended are 400 invalid_request_error.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

BATCHES_PATH = "/v1/messages/batches"
MAX_BATCH_REQUESTS = 100_000
MAX_BATCH_BYTES = 256 * 1024 * 1024
BATCH_EXPIRES_AFTER_S = 24 * 3600.0
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_REQUIRED_PARAMS = ("model", "max_tokens", "messages")
_COUNTS = ("processing", "succeeded", "errored", "canceled", "expired")


class BatchError(Exception):
    """An API error answer: HTTP status, error type, message."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message


def _invalid(message: str) -> BatchError:
    return BatchError(400, "invalid_request_error", message)


@dataclass
class FakeBatch:
    """One batch as the fake keeps it. Times are seconds on the fake's clock.

    requests: [{custom_id, params}] as received. answers: custom_id -> the result computed at
    creation ({type: succeeded, message} or {type: errored, error}); cancel and expiry win.
    """

    id: str
    requests: list[dict[str, Any]]
    answers: dict[str, dict[str, Any]]
    created_at: float
    ends_at: float
    expired: bool = False
    cancel_initiated_at: float | None = None

    def status(self, now: float) -> str:
        if now >= self.ends_at:
            return "ended"
        return "in_progress" if self.cancel_initiated_at is None else "canceling"

    def result(self, custom_id: str) -> dict[str, Any]:
        """The request's result once the batch has ended."""
        if self.cancel_initiated_at is not None:
            return {"type": "canceled"}
        if self.expired:
            return {"type": "expired"}
        return self.answers[custom_id]

    def request_counts(self, now: float) -> dict[str, int]:
        counts = dict.fromkeys(_COUNTS, 0)
        if self.status(now) != "ended":
            counts["processing"] = len(self.requests)
            return counts
        for request in self.requests:
            counts[self.result(request["custom_id"])["type"]] += 1
        return counts


def validate_batch(body: Any) -> list[dict[str, Any]]:
    """The requests of a create body, or BatchError 400 saying what is wrong (like the API)."""
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list):
        raise _invalid("requests: field required (a list of {custom_id, params})")
    if not 1 <= len(requests) <= MAX_BATCH_REQUESTS:
        raise _invalid(f"requests: 1 to {MAX_BATCH_REQUESTS:,} per batch, got {len(requests):,}")
    seen: set[str] = set()
    for i, request in enumerate(requests):
        _check_request(i, request, seen)
    return requests


def _check_request(i: int, request: Any, seen: set[str]) -> None:
    if not isinstance(request, dict) or not {"custom_id", "params"} <= request.keys():
        raise _invalid(f"requests.{i}: needs custom_id and params")
    custom_id, params = request["custom_id"], request["params"]
    shown = repr(custom_id)[:80]
    if not isinstance(custom_id, str) or not _CUSTOM_ID.match(custom_id):
        raise _invalid(f"requests.{i}.custom_id: {shown} must match ^[a-zA-Z0-9_-]{{1,64}}$")
    if custom_id in seen:
        raise _invalid(f"requests.{i}.custom_id: {shown} is used twice; custom_id must be unique")
    seen.add(custom_id)
    if not isinstance(params, dict):
        raise _invalid(f"requests.{i}.params: must be a Messages request object")
    missing = [name for name in _REQUIRED_PARAMS if name not in params]
    if missing:
        raise _invalid(f"requests.{i}.params.{missing[0]}: field required")
    if params.get("stream"):
        raise _invalid(f"requests.{i}.params.stream: a batch request cannot stream")


def rfc3339(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def result_of(reply: Any) -> dict[str, Any]:
    """A batch result from the fake's interactive answer (a `Reply`): a 200 is a succeeded
    message priced at the batch tier, any error status an errored result with its error."""
    if reply.status == 200:
        message = dict(reply.body, usage={**reply.body["usage"], "service_tier": "batch"})
        return {"type": "succeeded", "message": message}
    return {"type": "errored", "error": {"type": "error", "error": reply.body["error"]}}


class BatchStore:
    """The batches of one fake server, and the answers to the batch endpoints.

    answer: (headers, params) -> result dict (see `result_of`). clock: seconds, injectable.
    base_url: where results_url points. delay_s: how long a batch stays in_progress.
    expire_rate: share of batches that end expired, drawn from (seed, body, times seen).
    """

    def __init__(
        self,
        *,
        answer: Callable[[dict[str, str], dict[str, Any]], dict[str, Any]],
        clock: Callable[[], float],
        base_url: Callable[[], str],
        seed: int = 0,
        delay_s: float = 0.5,
        expire_rate: float = 0.0,
    ) -> None:
        if delay_s < 0 or not 0.0 <= expire_rate <= 1.0:
            raise ValueError("batch_delay_s must be >= 0 and batch_expire_rate in [0, 1]")
        self._answer, self._clock, self._base_url = answer, clock, base_url
        self.seed, self.delay_s, self.expire_rate = seed, delay_s, expire_rate
        self._lock = threading.Lock()
        self._batches: dict[str, FakeBatch] = {}
        self._seen: dict[str, int] = {}
        self._forced_expiries = 0
        self._ids = itertools.count(1)

    def snapshot(self) -> dict[str, FakeBatch]:
        with self._lock:
            return dict(self._batches)

    def expire_next(self, n: int = 1) -> None:
        with self._lock:
            self._forced_expiries += n

    def handle(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Any:
        """The answer body (a dict, or bytes of JSONL for results); raises BatchError."""
        route, _, query = path.partition("?")
        parts = route.removeprefix(BATCHES_PATH).strip("/").split("/")
        match method, parts:
            case "POST", [""]:
                return self._create(headers, raw)
            case "GET", [""]:
                return self._list(parse_qs(query))
            case "GET", [batch_id]:
                return self._wire(self._get(batch_id))
            case "POST", [batch_id, "cancel"]:
                return self._cancel(batch_id)
            case "DELETE", [batch_id]:
                return self._delete(batch_id)
            case "GET", [batch_id, "results"]:
                return self._results(batch_id)
        raise BatchError(404, "not_found_error", f"no route for {method} {route}")

    def _create(self, headers: dict[str, str], raw: bytes) -> dict[str, Any]:
        try:
            body = json.loads(raw)
        except ValueError:
            raise _invalid("body: not valid JSON") from None
        requests = validate_batch(body)
        answers = {r["custom_id"]: self._answer(headers, r["params"]) for r in requests}
        now, expired = self._clock(), self._draw_expiry(body)
        batch_id = f"msgbatch_fake{next(self._ids):06d}"
        batch = FakeBatch(batch_id, requests, answers, now, now + self.delay_s, expired)
        with self._lock:
            self._batches[batch_id] = batch
        return self._wire(batch)

    def _draw_expiry(self, body: dict[str, Any]) -> bool:
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        with self._lock:
            if self._forced_expiries:
                self._forced_expiries -= 1
                return True
            self._seen[digest] = seen = self._seen.get(digest, 0) + 1
        return random.Random(f"{self.seed}:batch:{digest}:{seen}").random() < self.expire_rate

    def _get(self, batch_id: str) -> FakeBatch:
        with self._lock:
            batch = self._batches.get(batch_id)
        if batch is None:
            raise BatchError(404, "not_found_error", f"message batch {batch_id[:80]!r} not found")
        return batch

    def _wire(self, batch: FakeBatch) -> dict[str, Any]:
        now = self._clock()
        ended = batch.status(now) == "ended"
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": batch.status(now),
            "request_counts": batch.request_counts(now),
            "results_url": f"{self._base_url()}{BATCHES_PATH}/{batch.id}/results"
            if ended
            else None,
            "created_at": rfc3339(batch.created_at),
            "expires_at": rfc3339(batch.created_at + BATCH_EXPIRES_AFTER_S),
            "ended_at": rfc3339(batch.ends_at) if ended else None,
            "cancel_initiated_at": rfc3339(batch.cancel_initiated_at),
            "archived_at": None,
        }

    def _list(self, query: dict[str, list[str]]) -> dict[str, Any]:
        limit = _limit(query)
        with self._lock:
            ids = list(reversed(self._batches))  # newest first, as the API lists them
        after, before = query.get("after_id", [None])[0], query.get("before_id", [None])[0]
        start = _position(ids, after) + 1 if after else 0
        if before:
            start = max(0, _position(ids, before) - limit)
            page, has_more = ids[start : _position(ids, before)], start > 0
        else:
            page, has_more = ids[start : start + limit], start + limit < len(ids)
        return {
            "data": [self._wire(self._get(i)) for i in page],
            "has_more": has_more,
            "first_id": page[0] if page else None,
            "last_id": page[-1] if page else None,
        }

    def _cancel(self, batch_id: str) -> dict[str, Any]:
        batch, now = self._get(batch_id), self._clock()
        if batch.status(now) == "ended":
            raise _invalid(f"message batch {batch_id} has already ended; it cannot be canceled")
        with self._lock:
            if batch.cancel_initiated_at is None:
                batch.cancel_initiated_at = now
        return self._wire(batch)

    def _delete(self, batch_id: str) -> dict[str, Any]:
        batch = self._get(batch_id)
        status = batch.status(self._clock())
        if status != "ended":
            raise _invalid(
                f"message batch {batch_id} is {status}; only an ended batch can be deleted"
                " (cancel it first)"
            )
        with self._lock:
            self._batches.pop(batch_id, None)
        return {"id": batch_id, "type": "message_batch_deleted"}

    def _results(self, batch_id: str) -> bytes:
        batch = self._get(batch_id)
        status = batch.status(self._clock())
        if status != "ended":
            raise _invalid(f"message batch {batch_id} is {status}; results come once it ends")
        # One line per request and no blank line: the SDK's JSONL decoder fails on one.
        lines = (
            json.dumps({"custom_id": r["custom_id"], "result": batch.result(r["custom_id"])})
            for r in batch.requests
        )
        return "".join(f"{line}\n" for line in lines).encode()


def _limit(query: dict[str, list[str]]) -> int:
    raw = query.get("limit", ["20"])[0]
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise _invalid(f"limit: must be an integer from 1 to 1000, got {raw[:20]!r}")
    return int(raw)


def _position(ids: list[str], cursor: str) -> int:
    try:
        return ids.index(cursor)
    except ValueError:
        raise _invalid(f"no message batch {cursor[:80]!r} to page from") from None
