"""`make drill`: the fault drill on local Redis (or RabbitMQ) and PostgreSQL, with a table of
checks.

What it does, in phases (each timed):
1. setup: resets a dedicated PostgreSQL database (`drill`, migrated with the real
   migrations), starts a redis-server of its own on a free port (never the shared 6379:
   `redis_server`), and starts, in this process, a fake Anthropic server with 30 % faults
   (429 with retry-after, 500, 529, timeouts, malformed and out-of-range answers, bad labels
   and actions: the fake's "mix") and a local PagerDuty receiver the fleet pages.
2. ingest: generates N records (DRILL_RECORDS or --records, 10,000) over 3 tenants and
   loads them with the real JSONL ingestion. One tenant (drill-west) goes by Message Batch
   (batch_mode "always"): the fake ends a batch after 1 s, expires the first batch whole and
   10 % of the others, and answers batched requests with the same faults.
3. fleet: starts 3 worker and 2 beat processes (two beats on purpose: the claim, not a
   single scheduler, must prevent double work), provider "anthropic" pointed at the fake.
4. run: waits until every record is terminal, injecting, as progress passes fixed marks:
   SIGKILL of a whole worker process group (and a replacement), a Redis restart (which loses
   every queued message: the database, lease expiry and the sweep must recover them) and
   `pg_terminate_backend` of every connection to the drill database. Every tick (and in
   the deliver phase too) checks that no crash left a record stuck (`invariants`): none
   leased past a chain's lease unless an unapplied Message Batch row holds it, and no
   "submitting" batch past its give-up. Then three provider outages, one after the other
   (`outages`): the key refused (every call 401) for 60 s, an overload (529) across the
   whole retry ladder, the model not found (404) for 30 s, each healed back to the mix.
5. deliver: waits until no outbox event is pending: every decision's event reached the
   local webhook receiver, which fails 30 % of deliveries (500, a hang past the sender's
   timeout, a dropped connection) and verifies every signature.
6. checks: stops the fleet, then checks completeness, provenance of every label and
   confidence, actions (at most once, allowed for the label), AI calls per record (attempt
   rows and the fake server's own per-record request count), the monitor against SQL, and
   the events (one per decision, all delivered, none lost, no bad signature), with the
   delivery latency from decision to 2xx, and the recovery after the Redis restart: the
   seconds from Redis answering again to the first stage completed after it (the sweep sees
   the broker's lost marker and frees every lease at once: workers/broker_watch.py), and
   the batches (the batch tenant's attempts all went by batch, but the breaker's probes; one
   batch at least expired whole, every batch was applied), and per outage
   (`outage_checks`): no record escalated and no retry spent for a fleet fault, one
   provider_down page opened and resolved, the resume after the heal within a probe
   interval plus a sweep interval (plus one stage), and the calls the fake got meanwhile.

`--broker rabbitmq` runs the same drill on the local RabbitMQ, in a vhost named like the
database (re-created), and the broker fault restarts RabbitMQ (`rabbitmqctl shutdown`, then
`rabbitmq-server -detached`) instead of Redis: its durable queues keep their messages, so the
recovery check measures the workers' reconnection, not a marker.

Exit status 0 when every check passes, 1 otherwise. Every process started here is stopped
(its own redis-server too), and a RabbitMQ broker is running again when the drill ends,
whatever happened (Ctrl-C included).

Modules: `setup` (configuration, services, fleet, ingest), `redis_server` (its own Redis),
`faults` (the counting fake and the injected faults), `outages` (the provider outages and
the timed PagerDuty receiver), `checks` and `outage_checks` (the checks and the result
table); the run is here.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy.orm import Session, sessionmaker

from enrichment.core import db
from enrichment.tooling.drill.checks import (
    Check,
    check_lease_watch,
    pending_events,
    print_table,
    run_checks,
)
from enrichment.tooling.drill.faults import CountingFake, Injector
from enrichment.tooling.drill.invariants import LeaseWatch
from enrichment.tooling.drill.outage_checks import check_outages
from enrichment.tooling.drill.outages import Outages, TimedPagerDuty, outage_lines
from enrichment.tooling.drill.setup import (
    BROKERS,
    RECEIVER_TIMEOUT_S,
    DrillConfig,
    Fleet,
    Phases,
    batch_one_tenant,
    fleet_env,
    ingest_records,
    leave_broker,
    point_webhooks,
    reset_services,
    start_fleet,
)
from enrichment.tooling.progress import Progress, ProgressLine, read_progress
from enrichment.tooling.receiver import Receiver
from enrichment.tooling.redis_server import RedisServer, free_port

log = structlog.get_logger(__name__)

PROGRESS_EVERY_S = 10.0  # off a terminal, a progress line at most this often
BATCH_EXPIRE_RATE = 0.1  # of the batch tenant's Message Batches, besides the first


def main(argv: list[str]) -> int:
    cfg = parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _sigterm)
    print(f"drill: {cfg.records} records on {cfg.broker}, logs in {cfg.run_dir}", flush=True)
    print(what_it_touches(cfg), flush=True)
    checks, phases, injector, outages = _drill(cfg)
    print_table(checks, phases, injector, outage_lines(outages))
    failed = [c.name for c in checks if c.ok is False]
    print("\nDRILL " + ("FAILED: " + "; ".join(failed) if failed else "PASSED"), flush=True)
    return 1 if failed else 0


def what_it_touches(cfg: DrillConfig) -> str:
    """The loud line before the drill starts: what it drops, starts and restarts."""
    lines = [f"drill: it DROPS and re-creates the PostgreSQL database {cfg.db_name!r}"]
    if cfg.broker == "rabbitmq":
        lines.append(
            "drill: it RESTARTS the RabbitMQ server on this machine (rabbitmqctl shutdown, "
            "then rabbitmq-server -detached): every client of it loses its connections; "
            f"its own vhost {cfg.db_name!r} is re-created"
        )
    else:
        lines.append(
            "drill: it starts and restarts a redis-server of its own on a free port (never "
            "the one on 6379), and stops it at the end"
        )
    return "\n".join(lines)


def parse_args(argv: list[str]) -> DrillConfig:
    # A leading "--" (older docs wrote `enrichment drill -- --records 60`) is accepted.
    argv = argv[1:] if argv[:1] == ["--"] else argv
    p = argparse.ArgumentParser(prog="enrichment drill", description=__doc__.split("\n")[0])
    p.add_argument("--records", type=int, default=int(os.environ.get("DRILL_RECORDS", 10_000)))
    p.add_argument("--concurrency", type=int, default=4, help="pool size per worker (4)")
    p.add_argument("--fault-rate", type=float, default=0.3, help="share of failing AI calls")
    p.add_argument(
        "--receiver-fault-rate", type=float, default=0.3, help="share of failing deliveries"
    )
    p.add_argument(
        "--webhook-backoff-scale", type=float, default=0.002, help="delivery retry schedule scale"
    )
    p.add_argument(
        "--backoff-scale", type=float, default=0.002, help="the retry ladder's scale (0.002)"
    )
    p.add_argument(
        "--outage-scale",
        type=float,
        default=1.0,
        help="key refused 60 s and model not found 30 s, times this (the overload lasts the"
        " whole retry ladder)",
    )
    p.add_argument("--timeout-s", type=float, default=1800.0, help="run phase limit (s)")
    p.add_argument("--lease-ttl-s", type=float, default=90.0, help="fleet lease TTL (s)")
    p.add_argument("--sweep-batch", type=int, default=100, help="records per sweep per beat")
    p.add_argument("--db-name", default="drill")
    p.add_argument("--redis-db", type=int, default=9)
    p.add_argument(
        "--broker", choices=BROKERS, default="redis", help="rabbitmq: vhost named like --db-name"
    )
    p.add_argument("--run-dir", type=Path, default=None, help="logs (a temporary folder)")
    a = p.parse_args(argv)
    cfg = DrillConfig(
        records=a.records,
        concurrency=a.concurrency,
        fault_rate=a.fault_rate,
        receiver_fault_rate=a.receiver_fault_rate,
        webhook_backoff_scale=a.webhook_backoff_scale,
        backoff_scale=a.backoff_scale,
        outage_scale=a.outage_scale,
        timeout_s=a.timeout_s,
        lease_ttl_s=a.lease_ttl_s,
        sweep_batch=a.sweep_batch,
        db_name=a.db_name,
        redis_db=a.redis_db,
        broker=a.broker,
    )
    if a.run_dir is not None:
        a.run_dir.mkdir(parents=True, exist_ok=True)
        cfg = DrillConfig(**{**cfg.__dict__, "run_dir": a.run_dir})
    return cfg


def _sigterm(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt  # the same clean-up path as Ctrl-C


def _drill(cfg: DrillConfig) -> tuple[list[Check], Phases, Injector | None, Outages | None]:
    redis_server = None
    if cfg.broker == "redis":
        cfg = replace(cfg, redis_port=cfg.redis_port or free_port())
        redis_server = RedisServer(cfg.redis_port, cfg.run_dir)
    phases = Phases()
    fake = CountingFake(
        faults=f"mix={cfg.fault_rate}",
        seed=cfg.seed,
        retry_after_s=0.5,
        hang_s=3.0,
        batch_delay_s=1.0,
        batch_expire_rate=BATCH_EXPIRE_RATE,
    )
    fake.expire_next_batches(1)  # the first batch expires whole, whatever the draw
    receiver = Receiver(
        fail_rate=cfg.receiver_fault_rate, seed=cfg.seed, hang_s=RECEIVER_TIMEOUT_S * 1.5
    )
    pagerduty = TimedPagerDuty()
    # Closes only the receivers that started: shutting down one that never served blocks.
    receivers = ExitStack()
    fleet, injector, outages = None, None, None
    try:
        with phases.phase("setup"):
            reset_services(cfg, redis_server)
            fake.start()
            receivers.enter_context(receiver)
            receivers.enter_context(pagerduty)
        factory = db.session_factory(cfg.db_url)
        with phases.phase("ingest"):
            total = ingest_records(cfg, factory)
            receiver.secret = point_webhooks(factory, receiver.url)
            batch_one_tenant(factory)
        with phases.phase("fleet"):
            fleet = Fleet(cfg, fleet_env(cfg, fake.base_url, pagerduty.url))
            start_fleet(fleet)
        injector = Injector(cfg, fleet, phases, redis_server)
        outages = Outages(cfg, fake, pagerduty, factory, phases)
        watch = LeaseWatch(cfg.fleet_settings())
        with phases.phase("run"):
            run_until_terminal(cfg, factory, injector, watch, outages)
        with phases.phase("deliver"):
            wait_for_events(cfg, factory, watch)
        with phases.phase("stop"):
            fleet.stop()
            fleet = None
        with phases.phase("checks"):
            total += outages.arrived
            checks = run_checks(
                cfg,
                factory,
                fake,
                receiver,
                total,
                broker_back_at=injector.broker_back_at,
                probe_windows=outages.probe_windows(),
            )
            with factory() as s:
                checks += check_outages(s, outages)
        checks += check_lease_watch(watch)
        if injector.pending:
            checks.append(Check("faults not injected", len(injector.pending), "0", False))
        return checks, phases, injector, outages
    finally:
        if fleet is not None:
            fleet.stop()
        fake.close()
        receivers.close()
        db.dispose_engines()
        leave_broker(cfg, redis_server)  # whatever happened (Ctrl-C included)


# ---------------------------------------------------------------- the run


def run_until_terminal(
    cfg: DrillConfig,
    factory: sessionmaker[Session],
    injector: Injector,
    watch: LeaseWatch | None = None,
    outages: Outages | None = None,
) -> Progress:
    """Poll every second; check the lease invariant (`watch`) on every tick; inject faults
    at their marks, then run the provider outages; stop when all is terminal and every
    outage is over."""
    deadline = time.monotonic() + cfg.timeout_s
    line = ProgressLine(every_s=PROGRESS_EVERY_S)
    last = None
    while time.monotonic() < deadline:
        if watch is not None:
            watch.check(factory)
        p = safe_progress(factory)
        if p is not None:
            last = p
            injector.maybe_inject(p, line.say)
            if outages is not None:
                outages.tick(p, line.say)
            busy = injector.pending or (outages is not None and outages.busy)
            if p.done and not busy:
                break
            line.draw(p, injector.phases.elapsed_s)
        time.sleep(1.0)
    final = last or read_progress(factory)
    line.draw(final, injector.phases.elapsed_s, force=True)
    line.close()
    return final


def wait_for_events(
    cfg: DrillConfig, factory: sessionmaker[Session], watch: LeaseWatch | None = None
) -> int:
    """Poll until no outbox event is pending (bounded by the run's limit), checking the
    lease invariant on every tick; the count left."""
    started = time.monotonic()
    said, pending = -PROGRESS_EVERY_S, -1
    while time.monotonic() - started < cfg.timeout_s:
        if watch is not None:
            watch.check(factory)
        try:
            pending = pending_events(factory)
        except Exception as exc:  # the database is briefly unreachable: poll again
            log.warning("drill.events_unavailable", error=type(exc).__name__)
        if pending == 0:
            break
        elapsed = time.monotonic() - started
        if elapsed - said >= PROGRESS_EVERY_S:
            print(f"{elapsed:6.1f}s  {pending} events waiting for delivery", flush=True)
            said = elapsed
        time.sleep(1.0)
    return pending


def safe_progress(factory: sessionmaker[Session]) -> Progress | None:
    """Progress, or None while the database is briefly unreachable (we just killed it)."""
    try:
        return read_progress(factory)
    except Exception as exc:  # any driver error: the next poll tries again
        log.warning("drill.progress_unavailable", error=type(exc).__name__)
        return None
