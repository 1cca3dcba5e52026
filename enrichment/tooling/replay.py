"""`enrichment replay FILE --speed N`: a timeline of orders, their events and the tenant's own
exceptions (tooling/generate/timelines.py) fed to the API in time order, the way they would
have arrived, with N seconds of the timeline passing per second of wall time.

How time is driven. The fleet reads the wall clock (`models.utcnow`): the order watch compares
an order's deadlines with it (core/order_watch.py), and each deadline is an event's time plus a
fixed promise in hours (24 h to pick, 12 h to pack, ...). Those promises do not shrink with
the replay, and the fleet's clock is not the replay's to move: a shared fleet must not run on
a test's clock. So the replay starts the timeline at the wall clock's "now" and posts each
step when the wall clock reaches its scaled moment, `wall(t) = start + (t - t0) / N`, and it
dates each event so that the deadline it starts falls at the scaled moment too: an event that
starts a wait of L hours (a wait's start events, `order_watch.WAITS`) is dated `wall(t) -
L * (1 - 1/N)`, every other event `wall(t)`. The watch then finds a pick missing at
`wall(t_release + 24 h)`, exactly when the replay's clock says 24 hours have passed. The price:
at N > 1 an order's stored event times are not its timeline's times, and the gaps between them
(which classification's timing evidence reads) are not the real gaps. At N = 1 every event
keeps its timeline time, shifted to start now. A replay is for a tenant of its own.

The tenant's exceptions go through the normal records route, as a tenant's system would send
them. 429 answers are retried after their Retry-After; each post that lands later than its
moment adds to `behind_s`, which the result reports.

`Clock` is injectable: tests run a replay without waiting (`FakeClock`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from enrichment.core.models import utcnow
from enrichment.core.order_watch import WAITS, event_type

STEPS = ("order", "events", "exception")
ORDERS = "/api/enrichment/orders/{}"
RECORDS = "/api/enrichment/records/{}"
MAX_429 = 20
STARTS_H = {kind: w.limit_h for w in WAITS for kind in w.start}


class TimelineError(ValueError):
    """A timeline line that cannot be replayed; the message names the file and line."""


class ApiUnreachable(Exception):
    """The API did not answer (refused, timed out): nothing more can be replayed."""


class ApiRefused(Exception):
    """The API refused the replay as a whole (bad key, unknown tenant, a server error)."""


@dataclass(frozen=True)
class Step:
    line_no: int
    at: datetime
    step: str
    order: str
    body: dict[str, Any]


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class RealClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass
class FakeClock:
    """A clock whose sleep passes at once: a replay without waiting."""

    now_s: float = 0.0

    def monotonic(self) -> float:
        return self.now_s

    def sleep(self, seconds: float) -> None:
        self.now_s += max(seconds, 0.0)


# -- reading ---------------------------------------------------------------------------------


def read_timeline(path: str | Path) -> list[Step]:
    """Every step of the file, checked, in time order (FileNotFoundError for no file;
    TimelineError naming the line for a bad one)."""
    path = Path(path)
    steps, seen = [], set()
    with path.open(encoding="utf-8") as f:
        for line_no, raw in enumerate(f, 1):
            if raw.strip():
                steps.append(_parse(path, line_no, raw))
    steps.sort(key=lambda s: s.at)
    for s in steps:  # an order's events and exceptions need the order itself first
        if s.step == "order":
            seen.add(s.order)
        elif s.order not in seen:
            raise TimelineError(f"{path}:{s.line_no}: order {s.order!r} has no earlier order step")
    return steps


def _parse(path: Path, line_no: int, raw: str) -> Step:
    where = f"{path}:{line_no}"
    try:
        data = json.loads(raw)
    except ValueError:
        raise TimelineError(f"{where}: not valid JSON") from None
    if not isinstance(data, dict) or data.get("step") not in STEPS:
        raise TimelineError(f"{where}: not a step (a JSON object with step in {list(STEPS)})")
    at = _time(data.get("at"))
    if at is None:
        raise TimelineError(f"{where}: at must be an ISO 8601 time with a zone")
    kind = data["step"]
    if kind == "order":
        order = data.get("order")
        if not isinstance(order, dict) or not isinstance(order.get("external_id"), str):
            raise TimelineError(f"{where}: an order step needs order.external_id")
        return Step(line_no, at, kind, order["external_id"], data)
    if not isinstance(data.get("order"), str):
        raise TimelineError(f"{where}: a {kind} step needs order (the order's external id)")
    need = "events" if kind == "events" else "exception"
    if not isinstance(data.get(need), list if need == "events" else dict):
        raise TimelineError(f"{where}: a {kind} step needs {need}")
    return Step(line_no, at, kind, data["order"], data)


def _time(raw: Any) -> datetime | None:
    try:
        at = datetime.fromisoformat(str(raw))
    except ValueError:
        return None
    return at if at.tzinfo is not None else None


# -- dating: the timeline's moments on the wall clock ------------------------------------------


@dataclass(frozen=True)
class Dating:
    """The timeline's t0 at wall time `start`, N timeline seconds per wall second."""

    t0: datetime
    start: datetime
    speed: float

    def wall(self, at: datetime) -> datetime:
        return self.start + (at - self.t0) / self.speed

    def event_at(self, event: dict[str, Any]) -> str:
        at = _time(event.get("at"))
        if at is None:
            return event.get("at")  # the API rejects it with its own words
        limit_h = STARTS_H.get(event_type(event.get("type", "")), 0.0)
        dated = self.wall(at) - timedelta(hours=limit_h * (1 - 1 / self.speed))
        return dated.astimezone(UTC).isoformat().replace("+00:00", "Z")

    def events(self, events: list[Any]) -> list[Any]:
        return [{**e, "at": self.event_at(e)} if isinstance(e, dict) else e for e in events]

    def order(self, order: dict[str, Any]) -> dict[str, Any]:
        payload = order.get("payload")
        if isinstance(payload, dict) and _time(payload.get("created_at")):
            wall = self.wall(_time(payload["created_at"]))
            payload = {**payload, "created_at": wall.isoformat().replace("+00:00", "Z")}
        return {**order, "payload": payload, "events": self.events(order.get("events", []))}


# -- posting ------------------------------------------------------------------------------------


@dataclass
class Result:
    """What a replay posted: steps by kind, the items the API rejected (first reasons kept),
    and how far behind its moment the latest post landed."""

    dating: Dating
    posted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STEPS, 0))
    rejected: list[str] = field(default_factory=list)
    behind_s: float = 0.0


def replay(
    steps: list[Step],
    client: httpx.Client,
    tenant: str,
    *,
    speed: float,
    clock: Clock | None = None,
    start: datetime | None = None,
    progress: Callable[[str], None] | None = None,
    progress_every_s: float = 10.0,
) -> Result:
    """Post `steps` (read_timeline's, in time order) for `tenant` through `client` (its base
    URL the API's, its headers the tenant's key), each at its scaled moment."""
    clock = clock or RealClock()
    result = Result(Dating(steps[0].at if steps else utcnow(), start or utcnow(), speed))
    orders: dict[str, dict[str, Any]] = {}
    begun = clock.monotonic()
    said = begun
    for done, step in enumerate(steps, 1):
        due = begun + (step.at - result.dating.t0).total_seconds() / speed
        late = clock.monotonic() - due
        if late < 0:
            clock.sleep(-late)
        result.behind_s = max(result.behind_s, late)
        _post(client, tenant, step, result, orders, clock)
        result.posted[step.step] += 1
        if progress and (clock.monotonic() - said >= progress_every_s or done == len(steps)):
            said = clock.monotonic()
            progress(progress_line(steps, done, result))
    return result


def progress_line(steps: list[Step], done: int, result: Result) -> str:
    total_h = (steps[-1].at - steps[0].at).total_seconds() / 3600
    at_h = (steps[done - 1].at - steps[0].at).total_seconds() / 3600
    p = result.posted
    return (
        f"replay: {done}/{len(steps)} steps, timeline +{at_h:.1f} h of {total_h:.1f} h"
        f" ({p['order']} orders, {p['events']} event posts, {p['exception']} exceptions;"
        f" {len(result.rejected)} rejected; at most {max(result.behind_s, 0.0):.1f} s behind)"
    )


def _post(
    client: httpx.Client,
    tenant: str,
    step: Step,
    result: Result,
    orders: dict[str, dict[str, Any]],
    clock: Clock,
) -> None:
    dating = result.dating
    if step.step == "order":
        orders[step.order] = dating.order(step.body["order"])
        answer = _send(client, ORDERS.format(tenant), {"items": [orders[step.order]]}, clock)
    elif step.step == "events":
        path = f"{ORDERS.format(tenant)}/{quote(step.order, safe='')}/events"
        answer = _send(client, path, {"events": dating.events(step.body["events"])}, clock)
    else:
        order = {"external_id": step.order, "payload": orders[step.order]["payload"]}
        item = {"order": order, "exception": step.body["exception"]}
        answer = _send(client, RECORDS.format(tenant), {"items": [item]}, clock)
    if isinstance(answer, str):
        result.rejected.append(f"line {step.line_no}: {answer}")
        return
    for item in answer.get("items", []):
        if item.get("result") == "rejected":
            result.rejected.append(f"line {step.line_no}: {item.get('reason')}")


def _send(client: httpx.Client, path: str, body: dict, clock: Clock) -> dict | str:
    """The API's JSON answer, or the reason a 404/422 gave for this step (the replay goes on);
    ApiUnreachable or ApiRefused when nothing more can be replayed."""
    for _ in range(MAX_429):
        try:
            r = client.post(path, json=body)
        except httpx.TransportError as exc:
            raise ApiUnreachable(f"the API at {client.base_url} did not answer: {exc}") from None
        if r.status_code != 429:
            break
        clock.sleep(float(r.headers.get("Retry-After") or 1))
    if r.status_code == 200:
        return r.json()
    detail = _detail(r)
    if r.status_code in (404, 422) and path.endswith("/events"):
        return f"{r.status_code}: {detail}"
    if r.status_code in (401, 403):
        raise ApiRefused(f"the API refused the key ({r.status_code}): {detail}")
    raise ApiRefused(f"the API answered {r.status_code} to POST {path}: {detail}")


def _detail(r: httpx.Response) -> str:
    try:
        return str(r.json().get("detail"))[:300]
    except (ValueError, AttributeError):
        return r.text[:300]
