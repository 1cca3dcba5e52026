"""The drill's faults: the counting fake Anthropic server, and the three injected failures
(SIGKILL of a worker's process group, a broker restart, and `pg_terminate_backend` of every
connection to the drill database). The broker restart is Redis' `shutdown nosave` (the queue
is lost), or on RabbitMQ `rabbitmqctl shutdown` and `rabbitmq-server -detached` (its durable
queues and persistent messages come back; the workers' unacknowledged ones are requeued)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import create_engine, text

from enrichment.core.models import utcnow
from enrichment.tooling.drill import rabbitmq
from enrichment.tooling.drill.setup import DrillConfig, Fleet, Phases
from enrichment.tooling.fake_anthropic import FakeAnthropic
from enrichment.tooling.processes import PG_ADMIN_URL
from enrichment.tooling.progress import Progress
from enrichment.tooling.redis_server import RedisServer

# Share of terminal records at which each fault is injected, in this order.
FAULT_MARKS = (("kill_worker", 0.15), ("restart_broker", 0.35), ("terminate_pg", 0.55))


def fault_marks(broker: str) -> list[tuple[str, float]]:
    """The faults in order, the broker restart named after the broker ("restart_redis")."""
    return [(f"restart_{broker}" if n == "restart_broker" else n, m) for n, m in FAULT_MARKS]


class CountingFake(FakeAnthropic):
    """The fake server, counting requests per record instead of keeping every body.

    A record is recognised by its delimited customer data, which is the same for all of its
    stages and unique per generated record (an accidental twin would only add to one count,
    so the per-record maximum can only be over-, never under-stated).

    While `outage` names a provider outage (outages.py sets it with `faults`), requests are
    counted per record in `during[outage]` instead of `per_record`: what the breaker let
    through then is judged per outage, not against a record's retry budget.
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(keep_requests=0, **kw)
        self.per_record: Counter[str] = Counter()
        self.during: dict[str, Counter[str]] = {}
        self.outage: str | None = None
        self.kinds: Counter[str] = Counter()

    def respond(self, path: str, headers: dict[str, str], raw: bytes):
        outage = self.outage
        counts = self.per_record if outage is None else self.during.setdefault(outage, Counter())
        counts[_record_key(raw)] += 1
        return super().respond(path, headers, raw)

    def _next_entry(self, raw: bytes):
        entry = super()._next_entry(raw)
        self.kinds[entry if isinstance(entry, str) else "scripted"] += 1
        return entry


def _record_key(raw: bytes) -> str:
    try:
        text_ = json.loads(raw)["messages"][0]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return "unparsable"
    start, end = text_.find("<customer_data>"), text_.find("</customer_data>")
    return hashlib.sha1(text_[start:end].encode()).hexdigest()


# ---------------------------------------------------------------- the faults themselves


def terminate_pg(cfg: DrillConfig) -> int:
    """Kill every connection to the drill database (workers, beats, ours); returns how many."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        killed = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": cfg.db_name},
        ).scalar_one()
    admin.dispose()
    return killed


class Injector:
    """Injects each fault once, when the share of terminal records passes its mark."""

    def __init__(
        self, cfg: DrillConfig, fleet: Fleet, phases: Phases, redis: RedisServer | None = None
    ) -> None:
        self.cfg, self.fleet, self.phases, self.redis = cfg, fleet, phases, redis
        self.pending = fault_marks(cfg.broker)
        self.done: list[tuple[str, float, str]] = []
        # When the broker answered again after its restart: the recovery check measures from here.
        self.broker_back_at: datetime | None = None
        self._actions: dict[str, Callable[[], str]] = {
            "kill_worker": self._kill_worker,
            "restart_redis": self._restart_redis,
            "restart_rabbitmq": self._restart_rabbitmq,
            "terminate_pg": self._terminate_pg,
        }

    def maybe_inject(self, p: Progress, say: Callable[[str], None]) -> None:
        """Inject every fault whose mark `p` has passed; `say` reports each one."""
        while self.pending and p.total and p.terminal / p.total >= self.pending[0][1]:
            name, _ = self.pending.pop(0)
            detail = self._actions[name]()
            self.done.append((name, self.phases.elapsed_s, detail))
            say(f"   fault {name} at {self.phases.elapsed_s:.1f}s: {detail}")

    def _kill_worker(self) -> str:
        self.fleet.procs["worker-1"].kill()  # SIGKILL to the group: every pool child too
        self.fleet.worker("worker-4")
        return "SIGKILL worker-1 process group; started worker-4"

    def _restart_redis(self) -> str:
        if self.redis is None:
            raise RuntimeError("the Redis restart needs the drill's own RedisServer")
        down_s = self.redis.restart()
        self.broker_back_at = utcnow()
        return f"shutdown nosave + restart on :{self.redis.port}, PING after {down_s:.1f}s"

    def _restart_rabbitmq(self) -> str:
        down_s = rabbitmq.restart()
        self.broker_back_at = utcnow()
        return f"rabbitmqctl shutdown + rabbitmq-server -detached, up after {down_s:.1f}s"

    def _terminate_pg(self) -> str:
        return f"pg_terminate_backend on {terminate_pg(self.cfg)} connections"
