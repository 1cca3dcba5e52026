"""Fast recovery when the broker loses its messages: the marker, the lease expiry, and a real
Redis restart under a real worker and beat.

The restart is of the test's own redis-server on a free port (the drill's `RedisServer`, no
persistence): the shared Redis on 6379 is never restarted or flushed here.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import redis
from sqlalchemy import func, select

from enrichment.core import recovery, selection
from enrichment.core.models import EnrichmentAttempt, ExceptionRecord, utcnow
from enrichment.tooling.redis_server import RedisServer, free_port
from tests.conftest import REDIS_URL
from tests.factories import make_record, make_tenant
from tests.fleet import fleet_env, start_beat, start_worker, stop_all, wait_for
from workers import broker_watch
from workers.broker_watch import LOCK_KEY, MARKER_KEY, BrokerWatch

R = ExceptionRecord
# Nothing listens on port 1: every command fails with a connection error.
DEAD_REDIS_URL = "redis://127.0.0.1:1/0"


def counting(result: int = 7):
    calls = []

    def expire() -> int:
        calls.append(1)
        return result

    return expire, calls


# ---------------------------------------------------------------- the marker


def test_a_missing_marker_is_a_loss_and_a_present_one_is_not(redis_client):
    watch = BrokerWatch(REDIS_URL)
    assert watch.lost()
    generation = watch.mark()
    assert not watch.lost()
    assert redis_client.get(MARKER_KEY).decode() == generation
    assert redis_client.ttl(MARKER_KEY) == -1  # no expiry
    redis_client.flushdb()
    assert watch.lost()
    watch.close()


def test_a_redis_error_is_not_a_loss_and_recovers_nothing():
    watch = BrokerWatch(DEAD_REDIS_URL)
    expire, calls = counting()
    assert not watch.lost()
    assert watch.recover(expire) is None
    assert calls == []


def test_recover_expires_once_then_sets_the_marker(redis_client):
    watch = BrokerWatch(REDIS_URL)
    expire, calls = counting(7)
    assert watch.recover(expire) == 7
    assert not watch.lost()
    assert watch.recover(expire) is None
    assert calls == [1]


def test_a_second_sweep_does_not_recover_while_the_first_holds_the_lock(redis_client):
    redis_client.set(LOCK_KEY, "another beat", ex=60)
    expire, calls = counting()
    assert BrokerWatch(REDIS_URL).recover(expire) is None
    assert calls == []


def test_a_failed_expiry_leaves_the_marker_missing_and_the_lock_free(redis_client):
    watch = BrokerWatch(REDIS_URL)

    def broken() -> int:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError):
        watch.recover(broken)
    assert watch.lost() and not redis_client.exists(LOCK_KEY)
    expire, calls = counting()
    assert watch.recover(expire) == 7  # the next sweep tries again


@pytest.mark.parametrize("url", ["filesystem://", "amqp://guest@127.0.0.1//"])
def test_brokers_that_keep_their_queue_have_no_marker(url):
    assert broker_watch.watch(url) is None
    assert broker_watch.recover_if_lost(url, sessions=None, settings=None) is None


# ---------------------------------------------------------------- lease expiry


def _leased(session, tenant, *, lease_in_s: float, **kw) -> int:
    rec = make_record(session, tenant, next_attempt_at=utcnow(), **kw)
    rec.lease_token = "old-token"
    rec.lease_expires_at = utcnow() + timedelta(seconds=lease_in_s)
    session.flush()
    return rec.id


def test_expire_leases_frees_only_unexpired_leases_of_backlog_records(factory, settings):
    with factory.begin() as s:
        tenant = make_tenant(s)
        in_flight = _leased(s, tenant, lease_in_s=600)
        done = _leased(s, tenant, lease_in_s=600, enriched_at=utcnow())
        escalated = _leased(s, tenant, lease_in_s=600, escalated_at=utcnow())
        already = _leased(s, tenant, lease_in_s=-5)
        in_a_batch = _leased(s, tenant, lease_in_s=26 * 3600)  # a Message Batch's lease
        free = make_record(s, tenant, next_attempt_at=utcnow()).id
    now = utcnow()
    with factory.begin() as s:
        assert recovery.expire_leases(s, settings, now=now) == 1
    with factory() as s:
        leases = dict(s.execute(select(R.id, R.lease_expires_at)).all())
    assert leases[in_flight] == now
    assert leases[done] > now and leases[escalated] > now
    assert leases[already] < now and leases[free] is None
    assert leases[in_a_batch] > now + timedelta(hours=25)
    with factory.begin() as s:
        claimed = {c.record_id for c in selection.claim_due(s, settings)}
    assert claimed == {in_flight, already, free}


def test_expire_leases_is_scoped_to_a_tenant_when_asked(factory, settings):
    with factory.begin() as s:
        ours, theirs = make_tenant(s, "ours"), make_tenant(s, "theirs")
        mine = _leased(s, ours, lease_in_s=600)
        other = _leased(s, theirs, lease_in_s=600)
        ours_id = ours.id
    now = utcnow()
    with factory.begin() as s:
        assert recovery.expire_leases(s, settings, now=now, tenant_id=ours_id) == 1
        assert recovery.expire_leases(s, settings, now=now, tenant_id=ours_id) == 0  # idempotent
    with factory() as s:
        assert s.get(R, mine).lease_expires_at == now
        assert s.get(R, other).lease_expires_at > now


# ---------------------------------------------------------------- a real Redis restart


@pytest.fixture
def fleet_procs():
    procs = []
    yield procs
    stop_all(procs)


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test's own on a free port, stopped (by its id) at the end."""
    run_dir = tmp_path / "redis"
    run_dir.mkdir()
    server = RedisServer(free_port(), run_dir)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis_client(own_redis):
    client = redis.Redis(host="127.0.0.1", port=own_redis.port)
    yield client
    client.close()


def _count(factory, *where) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(R).where(*where))


def _broker_lost_lines(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if '"sweep.broker_lost"' in line]
    return [json.loads(line[line.index("{") :]) for line in lines]


class Supervised:
    """Workers restarted when they exit, as a process supervisor would do in production: a
    Redis restart can crash a worker holding unacked messages (kombu's restore_unacked on a
    closed connection: "'NoneType' object has no attribute 'hostname'"), which is not what
    this test is about."""

    def __init__(self, env: dict[str, str], tmp_path, procs: list) -> None:
        self.env, self.tmp_path, self.procs, self.replaced = env, tmp_path, procs, 0
        self.workers = [self._start(ready=True)]

    def _start(self, *, ready: bool):
        name = f"w{len(self.procs) + 1}"
        timeout = 60.0 if ready else None
        log_path = self.tmp_path / f"{name}.log"
        proc = start_worker(self.env, log_path, name=name, ready_timeout_s=timeout)
        self.procs.append(proc)
        return proc

    def replace_dead(self) -> None:
        for i, proc in enumerate(self.workers):
            if not proc.alive():
                self.workers[i] = self._start(ready=False)
                self.replaced += 1

    def logs(self) -> str:
        return "".join(p.text() for p in self.procs)


@pytest.mark.slow
def test_records_leased_when_redis_restarts_are_claimed_again_at_once(
    pg_url, factory, own_redis, own_redis_client, tmp_path, fleet_procs
):
    # Given a worker and a beat with a 10-minute lease, past their first sweep (the marker)...
    redis_client = own_redis_client
    broker_url = f"redis://127.0.0.1:{own_redis.port}/0"
    env = fleet_env(
        pg_url, broker_url, tmp_path, ENRICHMENT_LEASE_TTL_S="600", ENRICHMENT_SWEEP_HORIZON_S="60"
    )
    fleet = Supervised(env, tmp_path, fleet_procs)
    beat = start_beat(env, tmp_path / "beat.log", tmp_path / "beat-schedule")
    fleet_procs.append(beat)
    wait_for(lambda: redis_client.exists(MARKER_KEY), timeout_s=60, what="marker", proc=beat)
    # ...and records the beat has claimed, their chains waiting in the broker (a countdown).
    with factory.begin() as s:
        tenant = make_tenant(s)
        ids = [
            make_record(s, tenant, next_attempt_at=utcnow() + timedelta(seconds=10)).id
            for _ in range(4)
        ]
    wait_for(
        lambda: _count(factory, R.id.in_(ids), R.lease_token.is_not(None)) == 4,
        timeout_s=30,
        what="4 records claimed",
    )
    with factory() as s:
        old_tokens = set(s.scalars(select(R.lease_token).where(R.id.in_(ids))))
        lease_until = min(s.scalars(select(R.lease_expires_at).where(R.id.in_(ids))))
    assert lease_until > utcnow() + timedelta(seconds=600)

    # When Redis restarts without saving: every queued message and the marker are gone.
    own_redis.restart()

    # Then the records are claimed again and completed long before their leases would expire.
    def enriched() -> bool:
        fleet.replace_dead()
        return _count(factory, R.id.in_(ids), R.enriched_at.is_not(None)) == 4

    wait_for(enriched, timeout_s=90, what="4 records enriched after the restart")
    assert utcnow() < lease_until
    with factory() as s:
        tokens = set(s.scalars(select(EnrichmentAttempt.lease_token).where(
            EnrichmentAttempt.record_id.in_(ids), EnrichmentAttempt.outcome == "completed"
        )))  # fmt: skip
    assert tokens and not tokens & old_tokens  # only the new claims' chains completed
    lost = _broker_lost_lines(fleet.logs())
    assert [line["expired"] for line in lost if line["expired"]] == [4]
    assert redis_client.exists(MARKER_KEY)
