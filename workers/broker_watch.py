"""The broker's generation marker: how the sweep notices that Redis lost its messages.

The sweep writes one key, `enrichment:broker-generation` (a timestamp and a uuid, no expiry),
into the broker's own Redis db: the db that holds the queues, not the result backend's or the
rate limiter's. The key lives and dies with the queued messages, so a sweep that finds it
missing knows the broker was restarted without persistence or flushed, and that every message
of every leased record may be gone. It then expires those leases at once
(enrichment/core/recovery.py) instead of waiting up to `sweep_horizon_s + lease_ttl_s` for
them, and sets the key again.

A missing key is always read as a loss, including on the first sweep ever against this Redis:
"the broker holds nothing of ours" is then true too (a fresh deployment has no leases, so
nothing is expired; a fleet upgraded or moved to a new Redis redoes the records in flight
once, and the lease token drops the old chains' writes). Telling "first sight" apart would
need a copy of the marker in the database, and would miss exactly the move to a new Redis.

A Redis persisted with AOF or RDB keeps the key across a restart; what it may lose (the last
second's messages) is still left to lease expiry, as before.

Only redis:// and rediss:// brokers have a marker: the filesystem broker keeps its queue in a
folder that survives restarts, and AMQP brokers keep durable queues; neither loses its state
the way a non-persistent Redis does. A Redis error is never read as a loss: the sweep logs it
and goes on (if Redis is down, the claim's enqueue fails anyway).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import partial

import redis
import structlog
from celery import signals
from sqlalchemy.orm import Session, sessionmaker

from enrichment.core import recovery
from enrichment.core.models import utcnow
from enrichment.core.settings import Settings

log = structlog.get_logger(__name__)

MARKER_KEY = "enrichment:broker-generation"
# Held while one sweep recovers, so a second beat does not expire the leases the first one has
# just claimed again. Lost with the marker on the next loss; expires by itself if its holder dies.
LOCK_KEY = "enrichment:broker-recovery"
LOCK_TTL_S = 60
SOCKET_TIMEOUT_S = 2.0
SCHEMES = ("redis://", "rediss://")


def has_marker(broker_url: str) -> bool:
    """Only Redis brokers lose their queue on a restart (see the module docstring)."""
    return broker_url.startswith(SCHEMES)


def new_generation() -> str:
    return f"{utcnow().isoformat()} {uuid.uuid4()}"


class BrokerWatch:
    """The marker on one broker's Redis; the client is made on first use (after fork)."""

    def __init__(self, broker_url: str) -> None:
        self.broker_url = broker_url
        self._client: redis.Redis | None = None

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(
                self.broker_url,
                socket_timeout=SOCKET_TIMEOUT_S,
                socket_connect_timeout=SOCKET_TIMEOUT_S,
            )
        return self._client

    def generation(self) -> str | None:
        """The marker's value, None when it is missing (a Redis error propagates)."""
        value = self.client.get(MARKER_KEY)
        return None if value is None else value.decode()

    def mark(self) -> str:
        """Set a new generation (no expiry) and return it."""
        value = new_generation()
        self.client.set(MARKER_KEY, value)
        return value

    def lost(self) -> bool:
        """True when the marker is missing; a Redis error is logged and is not a loss."""
        try:
            return self.generation() is None
        except redis.RedisError as exc:
            log.warning("broker_watch.unavailable", error=type(exc).__name__)
            return False

    def recover(self, expire: Callable[[], int]) -> int | None:
        """If the broker lost its state, run `expire` (it commits and returns a count), then
        set the marker again; returns the count, or None when nothing was done.

        Only the sweep holding the lock recovers, and it checks the marker again once it has
        the lock (another sweep may have just finished). The marker is set only after `expire`
        returned: if the database fails first, the lock is released and the next sweep tries.
        """
        if not self.lost() or not self._lock():
            return None
        try:
            if not self.lost():
                self._unlock()
                return None
            expired = expire()
        except BaseException:
            self._unlock()
            raise
        try:
            self.mark()
        except redis.RedisError as exc:  # the next sweep expires again: only duplicate work
            log.warning("broker_watch.mark_failed", error=type(exc).__name__)
        return expired

    def _lock(self) -> bool:
        try:
            return bool(self.client.set(LOCK_KEY, new_generation(), nx=True, ex=LOCK_TTL_S))
        except redis.RedisError as exc:
            log.warning("broker_watch.unavailable", error=type(exc).__name__)
            return False

    def _unlock(self) -> None:
        try:
            self.client.delete(LOCK_KEY)
        except redis.RedisError as exc:  # it expires by itself after LOCK_TTL_S
            log.warning("broker_watch.unavailable", error=type(exc).__name__)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


_watches: dict[str, BrokerWatch] = {}


def watch(broker_url: str) -> BrokerWatch | None:
    """This process's watch of `broker_url`, or None for a broker without a marker."""
    if not has_marker(broker_url):
        return None
    if broker_url not in _watches:
        _watches[broker_url] = BrokerWatch(broker_url)
    return _watches[broker_url]


def recover_if_lost(
    broker_url: str, sessions: sessionmaker[Session], settings: Settings
) -> int | None:
    """If the broker lost its state, expire every tenant's leases (a lost broker held the
    messages of all of them) and return how many; None when nothing was lost or the broker
    has no marker."""
    bw = watch(broker_url)
    return None if bw is None else bw.recover(partial(_expire_all, sessions, settings))


def _expire_all(sessions: sessionmaker[Session], settings: Settings) -> int:
    with sessions.begin() as session:
        return recovery.expire_leases(session, settings, now=utcnow())


@signals.worker_process_shutdown.connect  # prefork children
@signals.worker_shutdown.connect  # threads/gevent pools
def _close(**_kwargs) -> None:
    for bw in _watches.values():
        bw.close()
    _watches.clear()
