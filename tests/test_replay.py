"""Order timelines and their replay (issue 25): the generator's determinism and ground truth,
the replay's dating (pure), the CLI's one-line mistakes, and one generated timeline replayed
into two tenants through the API and a real worker giving the same raised problems."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from enrichment.core import order_watch, tenants
from enrichment.core.models import Order, Tenant
from enrichment.tooling import replay, replay_score
from enrichment.tooling.generate import timelines
from enrichment.tooling.processes import wait_for
from enrichment.tooling.redis_server import free_port

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def write(tmp_path, steps, name: str = "timeline.jsonl") -> str:
    path = tmp_path / name
    path.write_text("".join(json.dumps(s) + "\n" for s in steps))
    return str(path)


# -- the generator and the dating (no services) -----------------------------------------------


def test_the_same_seed_gives_the_same_timeline_in_time_order_with_its_ground_truth():
    first = list(timelines.generate_steps(40, 3))
    assert first == list(timelines.generate_steps(40, 3))
    assert first != list(timelines.generate_steps(40, 4))
    assert [s["at"] for s in first] == sorted(s["at"] for s in first)

    truths = {s["order"]["external_id"]: s["truth"] for s in first if s["step"] == "order"}
    exceptions = {s["order"]: s for s in first if s["step"] == "exception"}
    # Every order that goes wrong has its tenant's exception, later, with its true label;
    # healthy and near-miss orders have none.
    for order, truth in truths.items():
        if truth["kind"] in ("stall", "unforeseen"):
            assert exceptions[order]["exception"]["true_label"] == truth["label"]
        else:
            assert order not in exceptions
    assert {t["kind"] for t in truths.values()} >= {"healthy", "stall", "near_miss"}


def test_a_stalled_orders_exception_comes_after_its_deadline():
    steps = list(timelines.generate_steps(60, 5))
    for s in (s for s in steps if s["step"] == "order" and s["truth"]["kind"] == "stall"):
        ext, wait = s["order"]["external_id"], s["truth"]["wait"]
        events = [*s["order"]["events"]]
        events += [e for x in steps if x.get("order") == ext and x["step"] == "events"
                   for e in x["events"]]  # fmt: skip
        [raised] = [x for x in steps if x.get("order") == ext and x["step"] == "exception"]
        before = [e for e in events if e["at"] <= raised["at"]]
        late = {d.wait for d, _ in order_watch.overdue(before, _at(raised["at"]))}
        assert wait in late, (ext, wait)


def test_dating_puts_each_deadline_at_its_scaled_moment():
    # Given released to pick at T0 + 2 h on the timeline, replayed at 3600x from `start`
    start = datetime(2030, 1, 1, tzinfo=UTC)
    dating = replay.Dating(T0, start, 3600.0)
    released = {"source": "wms", "type": "Released To Pick", "at": "2026-11-02T10:00:00Z"}
    allocated = {"source": "wms", "type": "allocated", "at": "2026-11-02T10:00:00Z"}

    dated = dating.events([released, allocated])

    # Then the watch finds the pick due when 24 timeline hours have passed on the wall clock
    [deadline] = order_watch.deadlines(dated[:1])
    assert deadline.due_at == dating.wall(T0 + timedelta(hours=26))
    assert _at(dated[1]["at"]) == dating.wall(T0 + timedelta(hours=2))  # starts no wait
    # At 1x every event keeps its own time, shifted to start now
    same = replay.Dating(T0, start, 1.0).events([released])[0]
    assert _at(same["at"]) == start + timedelta(hours=2)


def test_a_replay_posts_in_time_order_on_its_clock_without_waiting(tmp_path):
    # Given a timeline of 3 orders spanning hours, and an API that records what it is sent
    steps = replay.read_timeline(write(tmp_path, timelines.generate_steps(3, 1, span_h=30)))
    seen = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append((clock.monotonic(), request.url.path))
        return httpx.Response(200, json={"items": []})

    clock = replay.FakeClock()
    client = httpx.Client(base_url="http://api", transport=httpx.MockTransport(answer))
    lines = []

    result = replay.replay(steps, client, "t", speed=3600.0, clock=clock, progress=lines.append)

    # Then each step is posted at its moment / 3600, in order, and progress is reported
    expected = [(s.at - steps[0].at).total_seconds() / 3600 for s in steps]
    assert [round(t, 6) for t, _ in seen] == [round(t, 6) for t in expected]
    assert sum(result.posted.values()) == len(steps) and result.rejected == []
    assert lines[-1].startswith(f"replay: {len(steps)}/{len(steps)} steps")


# -- the CLI's mistakes ----------------------------------------------------------------------


def test_the_cli_says_what_is_wrong_in_one_line(cli, tmp_path, capsys):
    good = write(tmp_path, timelines.generate_steps(2, 1))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(Path(good).read_text().splitlines()[0] + "\n{not json\n")
    orphan = write(tmp_path, [{"at": "2026-11-02T08:00:00Z", "step": "events", "order": "X",
                               "events": []}], "orphan.jsonl")  # fmt: skip
    port = free_port()  # nothing listens there

    cases = {
        ("replay", str(tmp_path / "none.jsonl"), "--key", "k"): (64, "no such file"),
        ("replay", str(bad), "--key", "k"): (64, f"{bad}:2: not valid JSON"),
        ("replay", orphan, "--key", "k"): (64, ":1: order 'X' has no earlier order step"),
        ("replay", good): (64, "no API key"),
        ("replay", good, "--key", "k", "--url", f"http://127.0.0.1:{port}"): (
            69,
            "did not answer",
        ),
    }
    for argv, (code, words) in cases.items():
        got, _out, err = cli(*argv)
        assert (got, words in err) == (code, True), (argv, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    # A bad argument is argparse's usage and one line, exit 64
    with pytest.raises(SystemExit) as stopped:
        cli("replay", good, "--speed", "0", "--key", "k")
    assert stopped.value.code == 64 and "must be a number above 0" in capsys.readouterr().err


def test_the_cli_names_a_refused_key_and_replays_with_a_good_one(cli, client, factory, tmp_path):
    # Given the API served over HTTP in this process, and a tenant
    good = write(tmp_path, timelines.generate_steps(2, 1))
    with factory.begin() as s:
        key = tenants.create_tenant(s, "k-3pl")[1]
    with _served() as url:
        # When the key is wrong: one line naming it
        code, _out, err = cli("replay", good, "--key", "wrong", "--tenant", "k-3pl", "--url", url)
        assert code == 64 and "the API refused the key (401)" in err, err

        # When it is right: the orders land, with a progress line at the end
        argv = ("replay", good, "--tenant", "k-3pl", "--url", url, "--speed", "1e6")
        code, out, err = cli(*argv, "--key", key)
    assert code == 0, err
    assert out.strip().splitlines()[-1].startswith("replay: ") and "(2 orders" in out
    with factory() as s:
        assert {o.external_id for o in s.scalars(select(Order))} == {"ORD-1-00001", "ORD-1-00002"}


@contextmanager
def _served():
    """The app (with the test's settings) on uvicorn in a thread, on a free port."""
    import uvicorn

    from enrichment.api import app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, timeout_s=20, what="the API")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# -- the same timeline, twice, through a real worker -------------------------------------------


def test_replay_the_same_timeline_gives_the_same_raised_problems_twice(
    inproc_worker, client, factory, tmp_path
):
    from fastapi.testclient import TestClient

    from enrichment.api import app
    from workers import tasks

    # Given one generated timeline (12 orders over 2 h, its first 40 hours) and two tenants
    path = write(tmp_path, timelines.generate_steps(12, 21, window_h=2.0, span_h=40.0))
    steps = replay.read_timeline(path)
    keys = {}
    with factory.begin() as s:
        for name in ("r1-3pl", "r2-3pl"):
            keys[name] = tenants.create_tenant(s, name)[1]

    # When it is replayed into both at 3600x (40 s) while the fleet sweeps
    stop = threading.Event()
    sweeper = threading.Thread(target=_sweep, args=(tasks, list(keys), stop), daemon=True)
    sweeper.start()
    results = {}
    try:
        threads = [
            threading.Thread(target=_replay, args=(TestClient(app, headers={
                "Authorization": f"Bearer {key}"}), steps, name, results))
            for name, key in keys.items()
        ]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert set(results) == set(keys), "a replay did not finish"
        # The watches looked at everything due (a deadline near the end may still be running)
        wait_for(lambda: _caught_up(factory), timeout_s=60, what="the watches caught up")
    finally:
        stop.set()
        sweeper.join(timeout=10)

    # Then both tenants have the same raised problems (order, label), and there are some
    raised = {name: _raised(factory, name) for name in keys}
    assert raised["r1-3pl"] == raised["r2-3pl"]
    assert len(raised["r1-3pl"]) >= 2
    for name, result in results.items():
        assert result.rejected == [], result.rejected
        with factory() as s:
            tenant = tenants.require(s, name)
            found = replay_score.raised_problems(s, tenant.id)
        scored = replay_score.score(steps, found, result.dating)
        assert scored.hits >= 1 and all(h > 0 for h in scored.lead_h)


def _sweep(tasks, names: list[str], stop: threading.Event) -> None:
    while not stop.wait(0.3):
        for name in names:
            tasks.sweep.run(name)


def _replay(test_client, steps, name: str, results: dict) -> None:
    with test_client:
        results[name] = replay.replay(steps, test_client, name, speed=3600.0)


def _caught_up(factory) -> bool:
    """No open watch is due or being looked at."""
    from enrichment.core.models import ORDER, ExceptionRecord, utcnow

    with factory() as s:
        due = s.scalar(
            select(ExceptionRecord.id).where(
                ExceptionRecord.record_type == ORDER,
                ExceptionRecord.enriched_at.is_(None),
                ExceptionRecord.escalated_at.is_(None),
                ExceptionRecord.next_attempt_at <= utcnow(),
            )
        )
    return due is None


def _raised(factory, name: str) -> set[tuple[str, str]]:
    with factory() as s:
        tenant_id = s.scalar(select(Tenant.id).where(Tenant.name == name))
        return {(r.order, r.label) for r in replay_score.raised_problems(s, tenant_id)}


def _at(raw: str) -> datetime:
    return datetime.fromisoformat(raw)
