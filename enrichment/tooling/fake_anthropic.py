"""A fake Anthropic Messages API on 127.0.0.1, for tests and fault drills.

It speaks the wire format the real SDK expects (POST /v1/messages): a success is a message
whose content is one `tool_use` block named after the request's forced tool, with `usage`;
a failure is `{"type": "error", "error": {"type": ..., "message": ...}}` with the real status
code and, where the API sends one, a `retry-after` header. Answers are computed from the
request text by keyword rules, so the same request always gets the same answer.

Faults (`--faults`, or `faults=` here): see `fake_faults` for the syntax and the kinds.
Which fault a request gets is drawn from hash(seed, request body, how often that exact body
was seen), so a run is deterministic under a seed however requests interleave. A request in a
Message Batch (`fake_batches`) draws and is answered exactly as if sent alone: an HTTP error
kind becomes an `errored` result, "timeout" answers normally.

Token counts and prompt caching follow the API's rules (`fake_cache`: a minimum prefix per
model, 5-minute or 1-hour TTLs on the injectable clock); `estimate_tokens`, `prefix_tokens`,
`request_tokens` and `min_cacheable_tokens` say what the fake counts.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from enrichment.tooling.fake_answers import answer_for, forced_tool, user_text
from enrichment.tooling.fake_batches import (
    BATCHES_PATH,
    MAX_BATCH_BYTES,
    BatchError,
    BatchStore,
    FakeBatch,
    result_of,
)
from enrichment.tooling.fake_cache import (  # noqa: F401 (re-exported: what the fake counts)
    MIN_CACHEABLE_TOKENS,
    PromptCache,
    estimate_tokens,
    min_cacheable_tokens,
    prefix_tokens,
    request_tokens,
)
from enrichment.tooling.fake_faults import (  # noqa: F401 (MIX_SHARES: re-exported)
    ERRORS,
    KINDS,
    MIX_SHARES,
    RETRY_AFTER_KINDS,
    parse_faults,
)


@dataclass
class Reply:
    """One HTTP answer: status, JSON body, headers, and how long to hang first (seconds)."""

    status: int
    body: dict[str, Any] | bytes
    headers: dict[str, str] = field(default_factory=dict)
    hang_s: float = 0.0


class FakeAnthropic:
    """The fake server as a handle: `with FakeAnthropic(faults="529=1") as fake: fake.base_url`.

    port 0 picks a free port. `script([...])` queues exact answers that win over the random
    mix: a kind ("ok", "529", "timeout", ...) or a dict, either {"input": {...}} (a tool call
    with that input) or {"status": 401, "type": "authentication_error", "message": "...",
    "headers": {...}}; requests in a batch take scripted answers too. `requests` lists the
    last `keep_requests` HTTP requests received (method, path, lower-cased headers, body;
    default 1,000, so a long-running server's memory stays bounded). `respond` is called once
    per Messages request, sent alone or inside a batch (the drill counts calls per record there).
    retry_after_s: the retry-after value sent with 429/500/529 (seconds, default 1).
    hang_s: how long a "timeout" fault sleeps before answering (seconds, default 60).
    api_key: when set, any other key gets a 401, as the real API would.
    clock: seconds now (default time.time): drives the prompt cache's TTLs and the batches.
    batch_delay_s: how long a batch stays in_progress (seconds, default 0.5).
    batch_expire_rate: share of batches that end with every request expired (default 0).
    batch_max_bytes: larger batch bodies get a 413 (default 256 MB, as the API).
    `batches` maps batch id -> FakeBatch; `expire_next_batches(n)` makes the next n expire.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: str = "",
        latency_s: float = 0.0,
        seed: int = 0,
        retry_after_s: float = 1.0,
        hang_s: float = 60.0,
        api_key: str | None = None,
        keep_requests: int = 1000,
        clock: Callable[[], float] = time.time,
        batch_delay_s: float = 0.5,
        batch_expire_rate: float = 0.0,
        batch_max_bytes: int = MAX_BATCH_BYTES,
    ) -> None:
        self.faults = parse_faults(faults)
        self.latency_s, self.seed = latency_s, seed
        self.retry_after_s, self.hang_s, self.api_key = retry_after_s, hang_s, api_key
        self.closing = threading.Event()
        self._lock = threading.Lock()
        self._script: deque[str | dict[str, Any]] = deque()
        self._requests: deque[dict[str, Any]] = deque(maxlen=keep_requests)
        self._seen: dict[str, int] = {}
        self.clock, self.batch_max_bytes = clock, batch_max_bytes
        self._cache = PromptCache(clock)
        self._ids = itertools.count(1)
        self._batches = BatchStore(
            answer=self._batch_answer,
            clock=clock,
            base_url=lambda: self.base_url,
            seed=seed,
            delay_s=batch_delay_s,
            expire_rate=batch_expire_rate,
        )
        self._server = _Server((host, port), _Handler)
        self._server.fake = self
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._requests)

    @property
    def batches(self) -> dict[str, FakeBatch]:
        """Every batch not deleted, by id (see fake_batches.FakeBatch)."""
        return self._batches.snapshot()

    def expire_next_batches(self, n: int = 1) -> None:
        """The next `n` batches created end with every request expired."""
        self._batches.expire_next(n)

    def script(self, entries: list[str | dict[str, Any]]) -> None:
        """Queue exact answers for the next requests, in order (see the class docstring)."""
        for entry in entries:
            if isinstance(entry, str) and entry not in KINDS:
                raise ValueError(f"unknown scripted answer {entry!r}; kinds: {sorted(KINDS)}")
        with self._lock:
            self._script.extend(entries)

    def start(self) -> FakeAnthropic:
        # A short poll interval makes close() take milliseconds, not the default 0.5 s.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        self.closing.set()  # wakes hanging "timeout" handlers
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def dispatch(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Reply:
        """The answer to one HTTP request, which it records in `requests`."""
        with self._lock:
            self._requests.append(
                {"method": method, "path": path, "headers": headers, "body": _json_or_none(raw)}
            )
        route = path.split("?")[0]
        if (method, route) == ("POST", "/v1/messages"):
            reply = self.respond(path, headers, raw)
            time.sleep(self.latency_s)
            return reply
        if route != BATCHES_PATH and not route.startswith(BATCHES_PATH + "/"):
            return _error_reply(404, "not_found_error", f"no route for {method} {route}")
        if not self._authorized(headers):
            return _error_reply(*ERRORS["401"])
        try:
            body = self._batches.handle(method, path, headers, raw)
        except BatchError as exc:
            return _error_reply(exc.status, exc.error_type, exc.message)
        jsonl = {"content-type": "application/x-jsonl"} if isinstance(body, bytes) else {}
        return Reply(200, body, jsonl)

    def respond(self, path: str, headers: dict[str, str], raw: bytes) -> Reply:
        """The answer to one Messages request (sent alone, or one request of a batch)."""
        body = _json_or_none(raw)
        problem = self._check(headers, body)
        if problem is not None:
            return problem
        entry = self._next_entry(raw)
        if isinstance(entry, dict):
            return self._custom(entry, body)
        return self._reply_for(entry, body)

    def _batch_answer(self, headers: dict[str, str], params: dict[str, Any]) -> dict[str, Any]:
        return result_of(self.respond("/v1/messages", headers, json.dumps(params).encode()))

    def _authorized(self, headers: dict[str, str]) -> bool:
        key = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
        return bool(key) and (self.api_key is None or key == self.api_key)

    def _check(self, headers: dict[str, str], body: Any) -> Reply | None:
        """The real API's request checks: key, required fields."""
        if not self._authorized(headers):
            return _error_reply(*ERRORS["401"])
        if not isinstance(body, dict) or not {"model", "max_tokens", "messages"} <= body.keys():
            return _error_reply(*ERRORS["400"])
        return None

    def _next_entry(self, raw: bytes) -> str | dict[str, Any]:
        digest = _digest(raw)  # outside the lock: it parses the body
        with self._lock:
            if self._script:
                return self._script.popleft()
            self._seen[digest] = seen = self._seen.get(digest, 0) + 1
        draw = random.Random(f"{self.seed}:{digest}:{seen}").random()
        faults = self.faults  # once: a drill swaps the whole dict while requests run
        for kind in sorted(faults):  # a fixed order keeps the draw -> kind map stable
            draw -= faults[kind]
            if draw < 0:
                return kind
        return "ok"

    def _reply_for(self, kind: str, body: dict[str, Any]) -> Reply:
        if kind in ERRORS:
            reply = _error_reply(*ERRORS[kind])
            if kind in RETRY_AFTER_KINDS:
                reply.headers["retry-after"] = _seconds_header(self.retry_after_s)
            return reply
        if kind == "timeout":
            return Reply(200, self._message(body, "ok"), hang_s=self.hang_s)
        return Reply(200, self._message(body, kind))

    def _custom(self, entry: dict[str, Any], body: dict[str, Any]) -> Reply:
        if "input" in entry:
            return Reply(200, self._message(body, "ok", tool_input=entry["input"]))
        reply = _error_reply(entry["status"], entry.get("type", "api_error"), entry.get("message"))
        reply.headers.update(entry.get("headers", {}))
        return reply

    def _message(self, body: dict[str, Any], kind: str, tool_input: Any = None) -> dict[str, Any]:
        tool, props = forced_tool(body)
        text = user_text(body)
        if tool is None:
            content = [{"type": "text", "text": "I can only answer in text."}]
        else:
            answer = tool_input if tool_input is not None else answer_for(props, text, kind)
            content = [{"type": "tool_use", "id": self._id("toolu"), "name": tool, "input": answer}]
        return {
            "id": self._id("msg"),
            "type": "message",
            "role": "assistant",
            "model": body.get("model"),
            "content": content,
            "stop_reason": "tool_use" if tool else "end_turn",
            "stop_sequence": None,
            "usage": self._cache.usage(body, content),
        }

    def _id(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self._ids):06d}"


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _digest(raw: bytes) -> str:
    """A request's identity for the fault draw: its JSON with sorted keys, so the params of
    a batch request draw like the same body sent alone."""
    body = _json_or_none(raw)
    text = raw if body is None else json.dumps(body, sort_keys=True).encode()
    return hashlib.sha256(text).hexdigest()


def _seconds_header(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def _error_reply(status: int, error_type: str, message: str | None) -> Reply:
    request_id = f"req_fake{random.getrandbits(48):012x}"
    body = {
        "type": "error",
        "error": {"type": error_type, "message": message or error_type},
        "request_id": request_id,
    }
    return Reply(status, body, {"request-id": request_id})


def _too_large(size: int, limit: int) -> Reply:
    return _error_reply(413, "request_too_large", f"request is {size:,} bytes; limit {limit:,}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a hanging "timeout" handler must not block shutdown
    fake: FakeAnthropic

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout) leaves a broken pipe behind: expected, not news.
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:  # noqa: N802 (the stdlib's naming)
        self._answer("POST")

    def do_GET(self) -> None:  # noqa: N802
        self._answer("GET")

    def do_DELETE(self) -> None:  # noqa: N802
        self._answer("DELETE")

    def _answer(self, method: str) -> None:
        fake, size = self.server.fake, int(self.headers.get("content-length") or 0)
        if self.path.startswith(BATCHES_PATH) and size > fake.batch_max_bytes:
            self._send(_too_large(self._drain(size), fake.batch_max_bytes))
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        reply = fake.dispatch(method, self.path, headers, self.rfile.read(size))
        if reply.hang_s and fake.closing.wait(reply.hang_s):
            return  # shutting down: drop the answer, as a dead server would
        self._send(reply)

    def _drain(self, size: int) -> int:
        # Read what the client sends (1 MB at a time, kept nowhere) so it gets the 413
        # rather than a reset connection.
        left = size
        while left > 0 and (chunk := self.rfile.read(min(left, 1 << 20))):
            left -= len(chunk)
        return size

    def _send(self, reply: Reply) -> None:
        body = reply.body
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(reply.status)
        for name, value in {"content-type": "application/json", **reply.headers}.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # the test output and the drill's terminal stay readable


def serve(
    host: str = "127.0.0.1",
    port: int = 8765,
    faults: str = "",
    latency_s: float = 0.0,
    seed: int = 0,
    **options: Any,
) -> None:
    """Serve until interrupted (`enrichment fake-anthropic`). `faults`: see the module docstring.

    options: retry_after_s, hang_s, api_key, batch_delay_s, batch_expire_rate (see FakeAnthropic).
    """
    fake = FakeAnthropic(
        host=host, port=port, faults=faults, latency_s=latency_s, seed=seed, **options
    )
    print(f"fake Anthropic API on {fake.base_url} (faults={fake.faults or 'none'}, seed={seed})")
    print(f"point the provider at it: ANTHROPIC_BASE_URL={fake.base_url}", flush=True)
    try:
        fake.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        fake.close()
