"""A real local webhook receiver for the tests, the drill and the demo.

stdlib `http.server` in a thread on 127.0.0.1 (port 0: the OS picks one). Every request is
verified with standardwebhooks' own `Webhook.verify`, then deduped on `webhook-id` the way a
receiver should. It can fail a seeded fraction of requests:

- "500": answers 500 and keeps nothing (the sender retries);
- "timeout": keeps the event, then answers only after the sender's timeout (`hang_s`);
- "drop": keeps the event, then closes the connection without an answer.

The last two are how duplicates happen in real life (the work was done, the answer was
lost), so the sender's retry shows up in `duplicates`, under the same webhook id.

    with Receiver(secret, fail_rate=0.3, seed=1) as r:
        ...  # point the tenant's webhook at r.url
        r.unique_ids(), r.duplicates, r.bad_signatures
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook

FAULTS = ("500", "timeout", "drop")


@dataclass(frozen=True)
class Request:
    """One request as it arrived. answer: the status sent, or "timeout", "drop", "held",
    "bad-signature", "incomplete" (the body ended before its Content-Length: the sender died
    mid-send); kept: whether the receiver took the event (first time or again)."""

    webhook_id: str | None
    answer: str
    kept: bool
    headers: dict[str, str]
    body: str


class Receiver:
    """See the module docstring. `secret` may be set after start (`r.secret = ...`), since
    the tenant's secret is made when its webhook is configured with `r.url`."""

    def __init__(
        self,
        secret: str | None = None,
        *,
        fail_rate: float = 0.0,
        faults: tuple[str, ...] = FAULTS,
        seed: int = 0,
        status: int = 200,
        hang_s: float = 2.0,
    ) -> None:
        if not 0.0 <= fail_rate <= 1.0 or not set(faults) <= set(FAULTS) or not faults:
            raise ValueError(f"fail_rate must be in [0, 1] and faults among {FAULTS}")
        self.secret = secret
        self.fail_rate = fail_rate
        self.faults = faults
        self.status = status
        self.hang_s = hang_s
        self.requests: list[Request] = []
        self.events: dict[str, Any] = {}  # webhook id -> the first kept body, parsed
        self.first_at: dict[str, datetime] = {}  # webhook id -> when it was first kept (UTC)
        self.duplicates: list[str] = []
        self.bad_signatures = 0
        self.failures = 0  # injected faults
        self.mismatched: list[str] = []  # a duplicate whose body differed from the first
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._released = threading.Event()
        self._released.set()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/hooks/enrichment"

    def __enter__(self) -> Receiver:
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closing.set()
        self._released.set()
        self._server.shutdown()
        self._server.server_close()

    def unique_ids(self) -> set[str]:
        """Webhook ids the receiver kept at least once."""
        with self._lock:
            return set(self.events)

    def hold(self) -> None:
        """From now on, requests hang (kept: no) until `release()`, then get a 503."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def held(self) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.answer == "held")

    def handle(self, handler: BaseHTTPRequestHandler, raw: bytes, length: int) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        msg_id, text = headers.get("webhook-id"), raw.decode(errors="replace")
        if len(raw) < length:  # nobody is left to answer, and half a body proves nothing
            self._note(Request(msg_id, "incomplete", False, headers, text))
            handler.close_connection = True
            return None
        if not self._verified(text, headers):
            self._note(Request(msg_id, "bad-signature", False, headers, text))
            return _answer(handler, 401, b"bad signature\n")
        if not self._released.is_set():
            self._note(Request(msg_id, "held", False, headers, text))
            self._released.wait()
            return _answer(handler, 503)
        fault = self._draw()
        kept = fault in ("timeout", "drop") or (fault is None and 200 <= self.status < 300)
        answer = fault or str(self.status)
        self._note(Request(msg_id, answer, kept, headers, text))
        if fault == "timeout":
            self._closing.wait(self.hang_s)
        if fault == "drop":
            handler.close_connection = True  # no status line at all: the peer sees a reset
            return None
        if fault == "500":
            return _answer(handler, 500)
        return _answer(handler, self.status, b"ok\n" if kept else b"")

    def _verified(self, text: str, headers: dict[str, str]) -> bool:
        if not self.secret:
            return False
        try:
            Webhook(self.secret).verify(text, headers, json_parse=False)
        except Exception:  # any malformed header is a bad signature too
            return False
        return True

    def _draw(self) -> str | None:
        with self._lock:
            if self._rng.random() >= self.fail_rate:
                return None
            self.failures += 1
            return self._rng.choice(self.faults)

    def _note(self, req: Request) -> None:
        with self._lock:
            self.requests.append(req)
            if req.answer == "bad-signature":
                self.bad_signatures += 1
            if not req.kept or req.webhook_id is None:
                return
            if req.webhook_id in self.events:
                self.duplicates.append(req.webhook_id)
                if json.loads(req.body) != self.events[req.webhook_id]:
                    self.mismatched.append(req.webhook_id)
            else:
                self.events[req.webhook_id] = json.loads(req.body)
                self.first_at[req.webhook_id] = datetime.now(UTC)


def _answer(handler: BaseHTTPRequestHandler, status: int, text: bytes = b"") -> None:
    """`status` with `text` as its body (`enrichment webhook test` prints its first line)."""
    with contextlib.suppress(OSError):  # the sender may have given up (a timeout)
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(text)))
        handler.end_headers()
        handler.wfile.write(text)


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (stdlib name)
            length = int(self.headers.get("Content-Length") or 0)
            receiver.handle(self, self.rfile.read(length), length)

        def log_message(self, *_args: object) -> None:  # quiet: tests read the records
            pass

    return Handler
