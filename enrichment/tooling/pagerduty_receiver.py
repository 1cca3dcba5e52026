"""A local PagerDuty Events API v2 receiver, for tests and drills (no network).

stdlib `http.server` in a thread on 127.0.0.1 (port 0: the OS picks one), answering POST
/v2/enqueue the way PagerDuty documents it:

- the body is validated as an Events v2 alert event: `routing_key` a 32-character string,
  `event_action` trigger|acknowledge|resolve, `dedup_key` at most 255 characters (required
  for acknowledge and resolve), and for a trigger a `payload` with `summary` (at most 1,024
  characters), `source` and `severity` (critical|error|warning|info), an ISO 8601
  `timestamp` and `component`, `group`, `class` strings and a `custom_details` object when
  present; no other top-level field than PagerDuty's;
- a valid event gets 202 {"status": "success", "message": "Event processed", "dedup_key"};
  an invalid one 400 {"status": "invalid event", "message": "Event object is invalid",
  "errors": [...]};
- alerts are kept by dedup_key as PagerDuty does: a trigger opens one (or adds to the open
  one), a resolve closes the open one, and a resolve with none open is dropped.

Faults: `fail_next(429, 500, 400, ...)` answers the next requests with those statuses (429 and
5xx with PagerDuty's error bodies; `retry_after` adds a Retry-After header), before any
validation.

    with PagerDutyReceiver() as pd:
        ...  # point ENRICHMENT_PAGERDUTY_URL (PagerDutyConfig.url) at pd.url
        pd.events, pd.open_alerts(), pd.requests
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")
TOP_LEVEL = {"routing_key", "event_action", "dedup_key", "payload", "images", "links",
             "client", "client_url"}  # fmt: skip
PAYLOAD_STRINGS = ("component", "group", "class")
ANSWERS = {
    429: {"status": "throttled", "message": "Requests for this service are arriving too quickly"},
    400: {"status": "invalid event", "message": "Event object is invalid", "errors": ["injected"]},
}


@dataclass(frozen=True)
class Request:
    """One request as it arrived: the status answered and the body (parsed when it was
    JSON, else None), with the raw text."""

    status: int
    body: Any
    text: str


def validate(event: Any) -> list[str]:
    """What is wrong with an Events v2 alert event ([] when nothing)."""
    if not isinstance(event, dict):
        return ["the body must be a JSON object"]
    errors = [f"unknown field '{k}'" for k in sorted(set(event) - TOP_LEVEL)]
    key = event.get("routing_key")
    if not isinstance(key, str) or len(key) != 32:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = event.get("event_action")
    if action not in ACTIONS:
        errors.append("'event_action' is invalid (must be one of: trigger acknowledge resolve)")
    dedup = event.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or not 0 < len(dedup) <= 255):
        errors.append("'dedup_key' must be a string of at most 255 characters")
    if action in ("acknowledge", "resolve") and dedup is None:
        errors.append(f"'dedup_key' is required for {action}")
    if action == "trigger":
        errors += _payload_errors(event.get("payload"))
    return errors


def _payload_errors(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["'payload' is missing or not an object"]
    errors = []
    summary = payload.get("summary")
    if not isinstance(summary, str) or not 0 < len(summary) <= 1024:
        errors.append("'payload.summary' must be 1 to 1024 characters")
    if not isinstance(payload.get("source"), str) or not payload["source"]:
        errors.append("'payload.source' is missing")
    if payload.get("severity") not in SEVERITIES:
        errors.append("'payload.severity' must be one of: critical error warning info")
    if "timestamp" in payload and not _iso8601(payload["timestamp"]):
        errors.append("'payload.timestamp' is not an ISO 8601 timestamp")
    errors += [f"'payload.{f}' must be a string" for f in PAYLOAD_STRINGS
               if f in payload and not isinstance(payload[f], str)]  # fmt: skip
    if "custom_details" in payload and not isinstance(payload["custom_details"], dict):
        errors.append("'payload.custom_details' must be an object")
    return errors


def _iso8601(value: Any) -> bool:
    try:
        datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return False
    return True


class PagerDutyReceiver:
    """See the module docstring."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.events: list[dict[str, Any]] = []  # accepted events, in order
        self.alerts: dict[str, str] = {}  # dedup_key -> "triggered" | "resolved"
        self._faults: list[tuple[int, float | None]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/v2/enqueue"

    def __enter__(self) -> PagerDutyReceiver:
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail_next(self, *statuses: int, retry_after: float | None = None) -> None:
        """Answer the next len(statuses) requests with these statuses, in order."""
        with self._lock:
            self._faults.extend((s, retry_after) for s in statuses)

    def open_alerts(self) -> set[str]:
        with self._lock:
            return {k for k, state in self.alerts.items() if state == "triggered"}

    def actions(self) -> list[tuple[str, str]]:
        """(event_action, dedup_key) of every accepted event, in order."""
        with self._lock:
            return [(e["event_action"], e.get("dedup_key", "")) for e in self.events]

    def handle(self, text: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        """The status, JSON answer and extra headers for one request body."""
        with self._lock:
            fault = self._faults.pop(0) if self._faults else None
        body = _parse(text)
        if fault is not None:
            status, wait = fault
            self._note(Request(status, body, text))
            headers = {"Retry-After": f"{wait:g}"} if wait is not None else {}
            return status, _fault_answer(status), headers
        errors = validate(body)
        if errors:
            self._note(Request(400, body, text))
            answer = {"status": "invalid event", "message": "Event object is invalid"}
            return 400, {**answer, "errors": errors}, {}
        key = body.get("dedup_key") or uuid.uuid4().hex
        self._accept(body, key)
        self._note(Request(202, body, text))
        return 202, {"status": "success", "message": "Event processed", "dedup_key": key}, {}

    def _accept(self, event: dict[str, Any], key: str) -> None:
        with self._lock:
            self.events.append(event)
            action, state = event["event_action"], self.alerts.get(key)
            if action == "trigger":
                self.alerts[key] = "triggered"
            elif action == "resolve" and state == "triggered":
                self.alerts[key] = "resolved"  # a resolve with no open alert is dropped

    def _note(self, req: Request) -> None:
        with self._lock:
            self.requests.append(req)


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _fault_answer(status: int) -> dict[str, Any]:
    if status in ANSWERS:
        return ANSWERS[status]
    if status >= 500:
        return {"status": "error", "message": "Internal server error"}
    return {"status": "error", "message": f"injected {status}"}


def _handler(receiver: PagerDutyReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (stdlib name)
            length = int(self.headers.get("Content-Length") or 0)
            text = self.rfile.read(length).decode(errors="replace")
            if self.path != "/v2/enqueue":
                status, answer, headers = 404, {"status": "error", "message": "not found"}, {}
            else:
                status, answer, headers = receiver.handle(text)
            data = json.dumps(answer).encode()
            with contextlib.suppress(OSError):  # the sender may have given up (a timeout)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        def log_message(self, *_args: object) -> None:  # quiet: tests read the records
            pass

    return Handler
