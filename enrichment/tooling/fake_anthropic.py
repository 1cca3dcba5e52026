"""A fake Anthropic Messages API on 127.0.0.1, for tests and fault drills.

It speaks the wire format the real SDK expects (POST /v1/messages): a success is a message
whose content is one `tool_use` block named after the request's forced tool, with `usage`;
a failure is `{"type": "error", "error": {"type": ..., "message": ...}}` with the real status
code and, where the API sends one, a `retry-after` header. Answers are computed from the
request text by keyword rules, so the same request always gets the same answer.

Fault syntax (`--faults`, or `faults=` here): comma-separated `kind=probability` pairs, e.g.
    "429=0.1,500=0.05,529=0.05,timeout=0.02,malformed=0.03,out_of_range=0.03,bad_label=0.01,
     bad_action=0.01"
and the shorthand "mix=0.3" (alias "rate=0.3"), which spreads 0.3 over the eight standard kinds
below in fixed proportions. Probabilities add up and must total at most 1; the rest is "ok".
Kinds:
    429           rate_limit_error with retry-after (the SDK retries it)
    spend_cap     429 with no retry-after (a spend limit: permanent)
    500, 529      api_error / overloaded_error with retry-after (the SDK retries them)
    400, 401, 403, 404, 413   the permanent client errors
    timeout       sleeps `hang_s` (60 s) before answering, past the client's timeout
    malformed     the tool input is a truncated JSON string instead of an object
    out_of_range  confidence 1.7 (classify), 11 problems (analyze), 6 actions (resolve)
    bad_label     a label outside the taxonomy (classify only; other stages answer normally)
    bad_action    an action the allow-list forbids for the label (resolve only)
    fooled        when the request carries a prompt injection ("ignore previous instructions",
                  "refund", ...), answer as a fooled model would: confidence 5.0 (classify),
                  an ISSUE_REFUND action (resolve); without an injection, answer normally
Which fault a request gets is drawn from hash(seed, request body, how often that exact body
was seen), so a run is deterministic under a seed however requests interleave.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from enrichment.tooling.fake_answers import answer_for

# Shares of the "mix" shorthand: rate limits and overloads dominate real incidents.
MIX_SHARES: dict[str, float] = {
    "429": 0.3,
    "500": 0.15,
    "529": 0.15,
    "timeout": 0.05,
    "malformed": 0.1,
    "out_of_range": 0.1,
    "bad_label": 0.075,
    "bad_action": 0.075,
}
_ERRORS: dict[str, tuple[int, str, str]] = {
    "400": (400, "invalid_request_error", "messages: field required"),
    "401": (401, "authentication_error", "invalid x-api-key"),
    "403": (403, "permission_error", "your API key does not have permission to use this model"),
    "404": (404, "not_found_error", "model not found"),
    "413": (413, "request_too_large", "request exceeds the maximum allowed size"),
    "429": (429, "rate_limit_error", "number of requests has exceeded your rate limit"),
    "spend_cap": (429, "rate_limit_error", "you have reached your specified API usage limits"),
    "500": (500, "api_error", "internal server error"),
    "529": (529, "overloaded_error", "Overloaded"),
}
_RETRY_AFTER_KINDS = frozenset({"429", "500", "529"})
KINDS = frozenset(_ERRORS) | frozenset(MIX_SHARES) | {"fooled", "ok"}


def _probability(item: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ValueError(
            f"fault {item!r}: write kind=probability, e.g. 429=0.1 or mix=0.3"
        ) from None


def parse_faults(spec: str) -> dict[str, float]:
    """`"429=0.1,mix=0.2"` -> {kind: probability}; raises ValueError with the valid kinds."""
    faults: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        kind, _, raw = item.partition("=")
        kind, share = kind.strip(), _probability(item, raw)
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"fault {item!r}: probability must be in [0, 1]")
        spread = {k: share * w for k, w in MIX_SHARES.items()} if kind in ("mix", "rate") else None
        if spread is None and kind not in KINDS - {"ok"}:
            raise ValueError(f"unknown fault {kind!r}; kinds: mix, {', '.join(sorted(KINDS))}")
        for k, p in (spread or {kind: share}).items():
            faults[k] = faults.get(k, 0.0) + p
    if sum(faults.values()) > 1.0 + 1e-9:
        raise ValueError(f"fault probabilities add up to {sum(faults.values()):.3f} > 1")
    return faults


@dataclass
class Reply:
    """One HTTP answer: status, JSON body, headers, and how long to hang first (seconds)."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    hang_s: float = 0.0


class FakeAnthropic:
    """The fake server as a handle: `with FakeAnthropic(faults="529=1") as fake: fake.base_url`.

    port 0 picks a free port. `script([...])` queues exact answers that win over the random
    mix: a kind ("ok", "529", "timeout", ...) or a dict, either {"input": {...}} (a tool call
    with that input) or {"status": 401, "type": "authentication_error", "message": "...",
    "headers": {...}}. `requests` lists the last `keep_requests` received (path, lower-cased
    headers, body; default 1,000, so a long-running server's memory stays bounded).
    retry_after_s: the retry-after value sent with 429/500/529 (seconds, default 1).
    hang_s: how long a "timeout" fault sleeps before answering (seconds, default 60).
    api_key: when set, any other key gets a 401, as the real API would.
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
    ) -> None:
        self.faults = parse_faults(faults)
        self.latency_s, self.seed = latency_s, seed
        self.retry_after_s, self.hang_s, self.api_key = retry_after_s, hang_s, api_key
        self.closing = threading.Event()
        self._lock = threading.Lock()
        self._script: deque[str | dict[str, Any]] = deque()
        self._requests: deque[dict[str, Any]] = deque(maxlen=keep_requests)
        self._seen: dict[str, int] = {}
        self._cached_prefixes: set[str] = set()
        self._ids = itertools.count(1)
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

    def respond(self, path: str, headers: dict[str, str], raw: bytes) -> Reply:
        """The answer to one request; also records the request."""
        body = _json_or_none(raw)
        with self._lock:
            self._requests.append({"path": path, "headers": headers, "body": body})
        problem = self._check(path, headers, body)
        if problem is not None:
            return problem
        entry = self._next_entry(raw)
        if isinstance(entry, dict):
            return self._custom(entry, body)
        return self._reply_for(entry, body)

    def _check(self, path: str, headers: dict[str, str], body: Any) -> Reply | None:
        """The real API's request checks: path, key, required fields."""
        if path.split("?")[0] != "/v1/messages":
            return _error_reply(404, "not_found_error", f"no route for {path}")
        key = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
        if not key or (self.api_key is not None and key != self.api_key):
            return _error_reply(*_ERRORS["401"])
        if not isinstance(body, dict) or not {"model", "max_tokens", "messages"} <= body.keys():
            return _error_reply(*_ERRORS["400"])
        return None

    def _next_entry(self, raw: bytes) -> str | dict[str, Any]:
        with self._lock:
            if self._script:
                return self._script.popleft()
            digest = hashlib.sha256(raw).hexdigest()
            self._seen[digest] = seen = self._seen.get(digest, 0) + 1
        draw = random.Random(f"{self.seed}:{digest}:{seen}").random()
        for kind in sorted(self.faults):  # a fixed order keeps the draw -> kind map stable
            draw -= self.faults[kind]
            if draw < 0:
                return kind
        return "ok"

    def _reply_for(self, kind: str, body: dict[str, Any]) -> Reply:
        if kind in _ERRORS:
            reply = _error_reply(*_ERRORS[kind])
            if kind in _RETRY_AFTER_KINDS:
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
        tool, props = _forced_tool(body)
        text = _user_text(body)
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
            "usage": self._usage(body, text, content),
        }

    def _id(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self._ids):06d}"

    def _usage(self, body: dict[str, Any], text: str, content: list[Any]) -> dict[str, int]:
        """Token counts at about 4 characters a token; a cache_control prefix is written once
        and read afterwards (the real API's 1024/4096-token minimum is not modelled)."""
        prefix = json.dumps([body.get("tools"), body.get("system")], sort_keys=True)
        prefix_tokens = math.ceil(len(prefix) / 4)
        usage = {"input_tokens": math.ceil(len(text) / 4) + 8, "output_tokens": 0}
        usage["output_tokens"] = math.ceil(len(json.dumps(content)) / 4)
        usage["cache_creation_input_tokens"] = usage["cache_read_input_tokens"] = 0
        if "cache_control" not in prefix:
            usage["input_tokens"] += prefix_tokens
            return usage
        with self._lock:
            hit = prefix in self._cached_prefixes
            self._cached_prefixes.add(prefix)
        usage["cache_read_input_tokens" if hit else "cache_creation_input_tokens"] = prefix_tokens
        return usage


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


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


def _forced_tool(body: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The forced tool's name and its schema's properties, or (None, {}) when none is forced."""
    choice = body.get("tool_choice") or {}
    if choice.get("type") != "tool":
        return None, {}
    for tool in body.get("tools") or []:
        if tool.get("name") == choice.get("name"):
            return tool["name"], tool.get("input_schema", {}).get("properties", {})
    return choice.get("name"), {}


def _user_text(body: dict[str, Any]) -> str:
    parts = []
    for message in body.get("messages", []):
        content = message.get("content")
        blocks = [{"text": content}] if isinstance(content, str) else content or []
        parts.extend(b.get("text", "") for b in blocks if isinstance(b, dict))
    return "\n".join(parts)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a hanging "timeout" handler must not block shutdown
    fake: FakeAnthropic

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout) leaves a broken pipe behind: expected, not news.
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:  # noqa: N802 (the stdlib's naming)
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        fake = self.server.fake
        reply = fake.respond(self.path, headers, raw)
        if fake.latency_s:
            time.sleep(fake.latency_s)
        if reply.hang_s and fake.closing.wait(reply.hang_s):
            return  # shutting down: drop the answer, as a dead server would
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        payload = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
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

    options: retry_after_s, hang_s, api_key (see FakeAnthropic).
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
