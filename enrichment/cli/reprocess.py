"""`enrichment requeue` and `enrichment redeliver`: reprocessing by hand, by external id.

The reset runs here, in one transaction with its audit row (by `cli:<os user>`), so no worker
is needed to start it; then a sweep (or a delivery) is sent to the fleet and this waits,
bounded, until each record is enriched or escalated again (each event delivered or failed
again). Only that wait needs a running fleet; `--no-wait` returns at once.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable

from sqlalchemy import select

from enrichment.cli import UserError
from enrichment.core import audit, db, selection, story, tenants
from enrichment.core.due import is_leased
from enrichment.core.models import ExceptionRecord as R
from enrichment.core.models import OutboxEvent as E
from enrichment.core.models import utcnow
from enrichment.core.outbox import DELIVERED, PENDING, webhook_id
from enrichment.core.settings import get_settings
from enrichment.core.text import printable
from enrichment.delivery import deliver

POLL_S = 0.5
PROGRESS_EVERY_S = 5.0
SHOWN = 100  # result lines printed; the rest are counted
# What a record that was not reset is doing instead (core/story.py state_of's words).
NOT_REQUEUED = {
    "enriched": 'already enriched: to enrich it again, ingest it with "reenrich": true',
    "reviewed": "a person decided it",
    "in progress": "a chain is working on it now",
    "waiting": "a chain holds it and retries it soon",
}
RECORD_SETTLED = {"enriched", "escalated", "reviewed"}
EVENT_SETTLED = {"delivered", "dead", "stopped", "failing again"}


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "requeue", help="give escalated or failed records back to the AI and wait for them"
    )
    p.add_argument("tenant")
    p.add_argument("external_ids", nargs="*", metavar="EXTERNAL_ID", help="the records' ids")
    p.add_argument("--all-escalated", action="store_true", help="every escalated or failed record")
    _wait_options(p)
    p.set_defaults(func=_requeue)
    p = sub.add_parser(
        "redeliver", help="send a tenant's dead and stopped events again and wait for them"
    )
    p.add_argument("tenant")
    _wait_options(p)
    p.set_defaults(func=_redeliver)


def _wait_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--wait-s", type=_seconds, default=120.0, help="how long to wait for the fleet (120)"
    )
    p.add_argument("--no-wait", action="store_true", help="reset, then return at once")


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number of seconds") from None
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(f"{raw} is outside (0, 86400] seconds")
    return value


def _factory():
    return db.session_factory(get_settings().database_url)


# -- requeue --------------------------------------------------------------------------------


def _requeue(args: argparse.Namespace) -> int:
    if bool(args.external_ids) == args.all_escalated:
        raise UserError("name the records' external ids, or give --all-escalated (not both)")
    wanted = list(dict.fromkeys(args.external_ids))
    with _factory().begin() as s:
        tenant_id = tenants.require(s, args.tenant).id
        named = story.ids_by_external(s, tenant_id, wanted)
        scope = None if args.all_escalated else list(named.values())
        reset = selection.requeue_ids(s, tenant_id, record_ids=scope)
        _audit_requeue(s, tenant_id, named, reset, all_escalated=args.all_escalated)
        refused = _refusals(s, tenant_id, [i for i in named.values() if i not in set(reset)])
    for ext in wanted:
        if ext not in named:
            print(f"{printable(ext)}: no such record of tenant {args.tenant}", file=sys.stderr)
    for ext, why in refused:
        print(f"{printable(ext)}: not requeued: {why}", file=sys.stderr)
    ok = len(named) == len(wanted) and not refused
    print(f"tenant {args.tenant}: {len(reset)} records requeued")
    if not reset or args.no_wait:
        return 0 if ok else 1
    _nudge("enrichment.sweep", args.tenant, args.wait_s)
    done = _watch(lambda: _record_states(tenant_id, reset), RECORD_SETTLED, args, "records")
    return 0 if ok and done else 1


def _audit_requeue(s, tenant_id: int, named: dict[str, int], reset: list[int], **kw) -> None:
    actor = audit.cli_actor()
    if kw["all_escalated"] and reset:
        audit.record(s, tenant_id, actor, audit.REQUEUED, None, reset=len(reset))
        return
    for ext, record_id in named.items():
        if record_id in set(reset):
            audit.record(s, tenant_id, actor, audit.REQUEUED, ext, record_id=record_id)


def _refusals(s, tenant_id: int, record_ids: list[int]) -> list[tuple[str, str]]:
    """(external id, why) for named records the requeue left alone."""
    if not record_ids:
        return []
    rows = s.scalars(select(R).where(R.tenant_id == tenant_id, R.id.in_(record_ids)))
    now = utcnow()
    return [(r.external_id, NOT_REQUEUED.get(story.state_of(r, now), "?")) for r in rows]


def _record_states(tenant_id: int, ids: list[int]) -> dict[str, str]:
    """external id -> its state now; a record retrying after a failure says so."""
    with _factory()() as s:
        rows = list(s.scalars(select(R).where(R.tenant_id == tenant_id, R.id.in_(ids))))
    now = utcnow()
    return {r.external_id: _record_word(r, now) for r in rows}


def _record_word(rec: R, now) -> str:
    state = story.state_of(rec, now)
    if state == "escalated":
        return f"escalated ({printable(rec.escalation_reason, 100)})"
    if state == "waiting" and is_leased(rec, now):
        return "retrying"
    return state


# -- redeliver ------------------------------------------------------------------------------


def _redeliver(args: argparse.Namespace) -> int:
    with _factory().begin() as s:
        tenant = tenants.require(s, args.tenant)
        tenant_id, pushed = tenant.id, tenant.webhook_url is not None
        reset = deliver.redeliver_ids(s, tenant_id)
        if reset:
            audit.record(s, tenant_id, audit.cli_actor(), audit.REDELIVERED, reset=len(reset))
    print(f"tenant {args.tenant}: {len(reset)} dead or stopped events made pending again")
    if not reset or args.no_wait:
        return 0
    if not pushed:
        print(f"tenant {args.tenant} has no webhook: they wait for the pull route")
        return 0
    _nudge("enrichment.deliver", args.tenant, args.wait_s)
    done = _watch(lambda: _event_states(tenant_id, reset), EVENT_SETTLED, args, "events")
    return 0 if done else 1


def _event_states(tenant_id: int, ids: list[int]) -> dict[str, str]:
    """webhook id (and record) -> the event's state now."""
    with _factory()() as s:
        rows = s.execute(
            select(E.id, E.type, E.status, E.attempts, E.last_error, R.external_id)
            .join(R, (R.id == E.record_id) & (R.tenant_id == tenant_id))
            .where(E.tenant_id == tenant_id, E.id.in_(ids))
        ).all()
    return {
        f"{webhook_id(r.id)} {r.type} of {printable(r.external_id)}": _event_word(r) for r in rows
    }


def _event_word(row) -> str:
    if row.status == PENDING and row.attempts and row.last_error:
        return f"failing again ({printable(row.last_error, 100)}; retried on its schedule)"
    return "delivered" if row.status == DELIVERED else row.status


# -- the fleet ------------------------------------------------------------------------------


def _nudge(task: str, tenant: str, wait_s: float) -> None:
    """Ask the fleet to start now rather than at beat's next tick; without a broker the
    reset still stands and the fleet takes it when it runs."""
    from workers.tasks import ask_fleet

    refused = ask_fleet(task, tenant, expires_s=max(wait_s, 60.0))
    if refused is not None:
        print(f"could not reach the broker ({printable(refused, 120)}); beat's next tick starts it")


def _watch(
    poll: Callable[[], dict[str, str]], settled: set[str], args: argparse.Namespace, noun: str
) -> bool:
    """Poll until every state is settled or `--wait-s` passes, printing progress; then each
    one's state. True when all settled."""
    started = last_shown = time.monotonic()
    first = states = poll()
    moved, shown = False, -1
    while True:
        done = sum(_settled(v, settled) for v in states.values())
        moved = moved or states != first or done > 0
        if done == len(states):
            break
        elapsed = time.monotonic() - started
        if elapsed >= args.wait_s:
            break
        if done != shown or time.monotonic() - last_shown >= PROGRESS_EVERY_S:
            print(f"waiting for the fleet: {done} of {len(states)} {noun} done ({elapsed:.0f} s)")
            sys.stdout.flush()
            shown, last_shown = done, time.monotonic()
        time.sleep(POLL_S)
        states = poll()
    _print_states(states)
    if done == len(states):
        return True
    _timed_out(args, noun, len(states) - done, moved=moved)
    return False


def _settled(state: str, settled: set[str]) -> bool:
    return state.split(" (")[0] in settled


def _print_states(states: dict[str, str]) -> None:
    for name, state in list(states.items())[:SHOWN]:
        print(f"{printable(name)}: {state}")
    if len(states) > SHOWN:
        print(f"... and {len(states) - SHOWN} more")
    counts = Counter(v.split(" (")[0] for v in states.values())
    print(", ".join(f"{n} {word}" for word, n in counts.most_common()))


def _timed_out(args: argparse.Namespace, noun: str, left: int, *, moved: bool) -> None:
    if not moved:
        print(
            f"enrichment: nothing moved in {args.wait_s:.0f} s: no worker seems to be running "
            f"(start one, and beat: make worker, make beat); the {noun} stay due and the fleet "
            "takes them when it runs",
            file=sys.stderr,
        )
        return
    print(
        f"enrichment: {left} {noun} not done after {args.wait_s:.0f} s; follow one with "
        f"`enrichment show {args.tenant} EXTERNAL_ID`, or wait longer with --wait-s",
        file=sys.stderr,
    )
