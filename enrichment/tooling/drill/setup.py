"""The drill's configuration, its services (database, broker, fleet) and its ingest.

The database is a scratch one (`processes.recreate_database`), the broker is emptied (the Redis
db flushed, or on RabbitMQ the drill's vhost re-created: `rabbitmq.reset_vhost`), and the
worker and beat processes are `processes.Proc`s: this module only says which ones, with which
environment.
"""

from __future__ import annotations

import json
import tempfile
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from enrichment.core.models import Tenant
from enrichment.core.settings import BatchConfig, Settings, WebhookConfig
from enrichment.delivery import webhooks
from enrichment.ingestion import ingest
from enrichment.tooling import generate
from enrichment.tooling.drill import rabbitmq
from enrichment.tooling.processes import (
    Proc,
    recreate_database,
    scrubbed_env,
    start_beat,
    start_worker,
    stop_all,
    wait_ready,
)
from enrichment.tooling.redis_server import RedisServer

BROKERS = ("redis", "rabbitmq")
TENANTS = ("drill-north", "drill-south", "drill-west")
# Its records go by Message Batch (batch_mode "always"); the other two by chains.
BATCH_TENANT = "drill-west"
CHAIN_TENANTS = tuple(t for t in TENANTS if t != BATCH_TENANT)
SDK_MAX_RETRIES = 2
AI_TIMEOUT_S = 2.0  # the fleet's per-call timeout; the fake's "timeout" fault hangs past it
SDK_RETRY_WAIT_S = 1.0  # the most the SDK waits between its tries
PAGERDUTY_ROUTING_KEY = "drill0pagerduty0routing0key00000"  # any 32 characters will do
BATCH_MAX_REQUESTS = 100  # a Message Batch's size in the drill (fleet_env says why)
RECEIVER_TIMEOUT_S = 1.0  # the fleet's webhook timeout; the receiver's "hang" outlasts it
WORKER_READY_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class DrillConfig:
    """The drill's knobs (command-line flags; see `enrichment drill --help`).

    records: records over the 3 tenants (DRILL_RECORDS, 10,000). fault_rate: share of AI
    requests that fail (0.3). receiver_fault_rate: share of webhook deliveries the local
    receiver fails (0.3: a 500, a hang past the sender's timeout, or a dropped connection;
    the last two keep the event, so duplicates happen as in real life). timeout_s: the run
    phase's limit (seconds, 1,800). webhook_backoff_scale: the delivery retry schedule's
    scale (0.002: 1m..12h become 0.12 s..86 s).
    lease_ttl_s: lease TTL given to the fleet (seconds, 90): how long a lost message waits
    before the sweep claims its record again. sweep_batch: records one sweep claims (per
    beat, every sweep_interval_s = 2 s), which keeps the queue about as deep as the fleet
    can work through within one lease. broker: "redis" (db `redis_db` of the drill's own
    redis-server on `redis_port`, a free port picked at start when 0: never the shared
    6379) or "rabbitmq" (the local server, in a vhost named like the database, `db_name`).
    backoff_scale: the retry ladder's scale (0.002: 1m/5m/15m/1h/4h become 0.12..28.8 s).
    outage_scale: multiplies the key-refused (60 s) and model-not-found (30 s) outages
    (outages.py); the overload lasts the whole retry ladder at `backoff_scale` whatever it
    is. probe_initial_s, probe_max_s, monitor_interval_s: the breaker's probes and the
    monitor at the drill's speed (`fleet_env` says why).
    """

    records: int = 10_000
    receiver_fault_rate: float = 0.3
    webhook_backoff_scale: float = 0.002
    workers: int = 3
    beats: int = 2
    concurrency: int = 4
    fault_rate: float = 0.3
    timeout_s: float = 1800.0
    lease_ttl_s: float = 90.0
    sweep_interval_s: float = 2.0
    sweep_horizon_s: float = 5.0
    batch_interval_s: float = 2.0
    sweep_batch: int = 100
    db_name: str = "drill"
    redis_db: int = 9
    redis_port: int = 0
    backoff_scale: float = 0.002
    outage_scale: float = 1.0
    probe_initial_s: float = 2.0
    probe_max_s: float = 4.0
    monitor_interval_s: float = 3.0
    broker: str = "redis"
    seed: int = 11
    run_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="drill-")))

    @property
    def db_url(self) -> str:
        return f"postgresql+psycopg://127.0.0.1:5432/{self.db_name}"

    @property
    def broker_url(self) -> str:
        if self.broker == "rabbitmq":
            return f"amqp://guest:guest@127.0.0.1:5672/{self.db_name}"
        return f"redis://127.0.0.1:{self.redis_port}/{self.redis_db}"

    @property
    def max_retries(self) -> int:
        return 5

    def fleet_settings(self) -> Settings:
        """The fleet's timing as Settings (what its leases and give-ups are computed from)."""
        return Settings(
            database_url=self.db_url,
            broker_url=self.broker_url,
            sweep_interval_s=self.sweep_interval_s,
            sweep_horizon_s=self.sweep_horizon_s,
            lease_ttl_s=self.lease_ttl_s,
            batches=BatchConfig(interval_s=self.batch_interval_s),
        )


class Phases:
    """Wall-clock seconds per phase, in the order they ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.started = time.monotonic()

    @contextmanager
    def phase(self, name: str):
        begin = time.monotonic()
        print(f"== {name}", flush=True)
        try:
            yield
        finally:
            self.seconds[name] = time.monotonic() - begin

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started


# ---------------------------------------------------------------- services


def reset_services(cfg: DrillConfig, redis_server: RedisServer | None) -> None:
    """The broker up and empty (the drill's own redis-server started, or the vhost
    re-created); the drill database re-created and migrated."""
    if cfg.broker == "rabbitmq":
        rabbitmq.start()
        rabbitmq.reset_vhost(cfg.broker_url)
    elif redis_server is not None:
        redis_server.start()  # a new process with no persistence: empty
    recreate_database(cfg.db_name)


def leave_broker(cfg: DrillConfig, redis_server: RedisServer | None) -> None:
    """How the drill leaves its broker, whatever happened: the local RabbitMQ running, the
    drill's own redis-server stopped."""
    if cfg.broker == "rabbitmq":
        rabbitmq.start()
    elif redis_server is not None:
        redis_server.stop()


# ---------------------------------------------------------------- the fleet


def fleet_env(cfg: DrillConfig, fake_url: str, pagerduty_url: str) -> dict[str, str]:
    """The workers' and beats' environment: the drill's services, scaled-down time."""
    return scrubbed_env(
        DATABASE_URL=cfg.db_url,
        CELERY_BROKER_URL=cfg.broker_url,
        ENRICHMENT_VAR_DIR=str(cfg.run_dir),
        ENRICHMENT_LOG_FORMAT="json",
        ENRICHMENT_AI_PROVIDER="anthropic",
        ANTHROPIC_API_KEY="sk-ant-drill-test-key",
        ANTHROPIC_BASE_URL=fake_url,
        ENRICHMENT_AI_TIMEOUT_S=str(AI_TIMEOUT_S),
        ENRICHMENT_AI_RPM="0",  # the fake has no quota; the limiter has its own tests
        ENRICHMENT_ANTHROPIC_MAX_RETRIES=str(SDK_MAX_RETRIES),
        ENRICHMENT_ANTHROPIC_MAX_RETRY_WAIT_S=str(SDK_RETRY_WAIT_S),
        # At 0.002, 1m/5m/15m/1h/4h -> 0.12/0.6/1.8/7.2/28.8 s: all five retries within ~40 s.
        ENRICHMENT_BACKOFF_SCALE=str(cfg.backoff_scale),
        ENRICHMENT_LOW_CONFIDENCE_RECHECK_S="1",
        ENRICHMENT_SWEEP_INTERVAL_S=str(cfg.sweep_interval_s),
        ENRICHMENT_SWEEP_HORIZON_S=str(cfg.sweep_horizon_s),
        ENRICHMENT_SWEEP_BATCH_SIZE=str(cfg.sweep_batch),
        ENRICHMENT_LEASE_TTL_S=str(cfg.lease_ttl_s),
        # A monitor tick every second (interval / the warning divisor, 3), so a provider_down
        # page is sent and resolved within about a second of the breaker opening and closing:
        # the outages (and the healthy gaps between them) last seconds, not hours.
        ENRICHMENT_MONITOR_INTERVAL_S=str(cfg.monitor_interval_s),
        PAGERDUTY_ROUTING_KEY=PAGERDUTY_ROUTING_KEY,
        ENRICHMENT_PAGERDUTY_URL=pagerduty_url,
        # The breaker's probes at the drill's scale: every 2 s, then 4 s (not 15..120 s), as
        # the resume after a heal is bounded by the probe interval and a drill outage lasts
        # under a minute. Its ratio keeps the defaults (half of the last 20 interactive calls
        # within 60 s): 10 records waiting gather 20 calls in a few seconds of an overload,
        # while the healthy mix (under 1 % of calls still failing after the SDK's 3 tries)
        # stays far from 10 failures in 20.
        ENRICHMENT_BREAKER_PROBE_INITIAL_S=str(cfg.probe_initial_s),
        ENRICHMENT_BREAKER_PROBE_MAX_S=str(cfg.probe_max_s),
        # Decisions go to the drill's local receiver (plain http on 127.0.0.1), retried on
        # the 1m..12h schedule scaled down. 12 attempts, not 8: with 30 % of the receiver's
        # answers failing, 8 failures in a row would hit about 2 of 25,000 events.
        ENRICHMENT_WEBHOOK_ALLOW_PRIVATE="1",
        ENRICHMENT_WEBHOOK_BACKOFF_SCALE=str(cfg.webhook_backoff_scale),
        ENRICHMENT_WEBHOOK_MAX_ATTEMPTS="12",
        ENRICHMENT_WEBHOOK_TIMEOUT_S=str(RECEIVER_TIMEOUT_S),
        ENRICHMENT_WEBHOOK_INTERVAL_S="2",
        ENRICHMENT_BATCH_INTERVAL_S=str(cfg.batch_interval_s),
        # The fake draws every answer of a batch while its create call waits (about 4 ms a
        # request of ~34 KB here), and the 2 s AI timeout bounds the create too: at 2,000
        # records a create of 666 requests took 2.5 s on an idle machine, so every create
        # timed out, the batch tenant waited out 5 to 7 given-up batches, and a batches run
        # slowed by them held a give-up past its bound. 100 a batch: about 0.4 s a create.
        ENRICHMENT_BATCH_MAX_REQUESTS=str(BATCH_MAX_REQUESTS),
    )


def batch_one_tenant(factory: sessionmaker[Session]) -> None:
    """BATCH_TENANT's records go by Message Batch from now on, its critical and high ones
    too: a day to a person lets a batch hold them (core/time_to_person.py)."""
    with factory.begin() as s:
        tenant = s.scalars(select(Tenant).where(Tenant.name == BATCH_TENANT)).one()
        day = {"critical": 86_400, "high": 86_400}
        tenant.settings = {**(tenant.settings or {}), "batch_mode": "always",
                           "time_to_person_s": day}  # fmt: skip


def point_webhooks(factory: sessionmaker[Session], url: str) -> str:
    """Every drill tenant's webhook at the one local receiver, with one signing secret."""
    config = WebhookConfig(allow_private=True)
    with factory.begin() as session:
        rows = session.scalars(select(Tenant).where(Tenant.name.in_(TENANTS))).all()
        secret = webhooks.configure(rows[0], url, config)
        for tenant in rows[1:]:
            webhooks.configure(tenant, url, config)
            tenant.webhook_secret = secret
    return secret


@dataclass
class Fleet:
    """The drill's worker and beat processes by name (logs `<name>.log` in the run folder);
    starting, signalling and reaping them is `processes`' job."""

    cfg: DrillConfig
    env: dict[str, str]
    procs: dict[str, Proc] = field(default_factory=dict)

    def worker(self, name: str) -> Proc:
        """Start worker `name` without waiting for it to be ready."""
        log_path = self.cfg.run_dir / f"{name}.log"
        concurrency = self.cfg.concurrency
        proc = start_worker(
            self.env, log_path, name=name, concurrency=concurrency, ready_timeout_s=None
        )
        self.procs[name] = proc
        return proc

    def beat(self, name: str) -> Proc:
        schedule = self.cfg.run_dir / f"{name}-schedule"
        proc = start_beat(self.env, self.cfg.run_dir / f"{name}.log", schedule)
        self.procs[name] = proc
        return proc

    def stop(self) -> None:
        """Warm shutdown (SIGTERM) for all, then SIGKILL whatever is left after 20 s."""
        stop_all(list(self.procs.values()), timeout_s=20.0)


def start_fleet(fleet: Fleet) -> None:
    """The workers (waiting until each is ready), then the beats."""
    workers = [fleet.worker(f"worker-{n}") for n in range(1, fleet.cfg.workers + 1)]
    for proc in workers:
        wait_ready(proc, what=proc.log_path.stem, timeout_s=WORKER_READY_TIMEOUT_S)
    for n in range(1, fleet.cfg.beats + 1):
        fleet.beat(f"beat-{n}")


# ---------------------------------------------------------------- ingest


def ingest_records(
    cfg: DrillConfig,
    factory: sessionmaker[Session],
    count: int | None = None,
    *,
    tag: str = "",
    tenants: tuple[str, ...] = TENANTS,
) -> int:
    """Generate and load `count` (default `cfg.records`) records spread over `tenants` (the
    three); a `tag` (later arrivals) gives them ids, contents and a file of their own."""
    count = cfg.records if count is None else count
    path = cfg.run_dir / f"drill{tag}.jsonl"
    seed = cfg.seed + (zlib.crc32(tag.encode()) if tag else 0)
    with path.open("w", encoding="utf-8") as f:
        for i, tenant in enumerate(tenants):
            n = count // len(tenants) + (i < count % len(tenants))
            for line in generate.generate_lines(tenant, n, seed + i, id_prefix=tenant + tag):
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
    report = ingest.ingest_file(factory, path, create_tenants=True)
    if report.rejected:
        raise RuntimeError(f"ingest rejected generated lines: {report.rejected[:3]}")
    return report.created
