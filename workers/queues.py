"""The broker's queues: how they are declared, what each broker needs of its transport, and how
deep they are now (for /metrics and the autoscalers).

RabbitMQ gets **classic durable queues**, declared with `x-queue-type: classic` so that a vhost
whose default queue type is quorum cannot change them behind Celery's back. Why not quorum:

- With quorum queues a countdown needs Celery's native delayed delivery, and in Celery 5.7 that
  only works on a topic or fanout exchange (ours is the default direct one: Celery logs a
  warning and the worker holds the ETA after all), truncates the countdown to whole seconds,
  and raises ValueError from `apply_async` for a countdown under 1 s (celery/app/base.py,
  kombu/transport/native_delayed_delivery.py `calculate_routing_key`). Claims and retries
  often carry such countdowns (a record due within the second; the demo's backoff).
- What quorum queues add is replication across a RabbitMQ cluster. The fleet does not need the
  broker to keep its messages: the database holds every record's schedule and lease, and a
  lost message only waits for its lease (README, "Why a lost message loses nothing").
- Classic durable queues and persistent messages (Celery's default delivery mode) survive a
  broker restart; unacknowledged messages are requeued at once when their consumer's
  connection drops (a SIGKILLed worker), not after a visibility timeout as on Redis. So
  RabbitMQ needs no broker-loss marker (workers/broker_watch.py is Redis-only).

A countdown message is held unacknowledged by the worker until it runs, and RabbitMQ closes a
channel that holds a delivery past `consumer_timeout` (30 min by default): Settings refuses a
sweep horizon that could reach it on an amqp broker (`check_amqp_hold` in core/settings.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from celery import Celery
from kombu import Connection, Queue

from enrichment.core.settings import VAR_DIR, Settings, is_amqp

log = structlog.get_logger(__name__)

# The stage chains go to "celery"; the monitor, deliveries and batches to "control" (app.py).
QUEUE_NAMES = ("celery", "control")
# A /metrics scrape waits at most about this long for the broker, and this long for pings.
READ_TIMEOUT_S = 2.0
PING_TIMEOUT_S = 0.5


def task_queues(settings: Settings) -> tuple[Queue, ...]:
    """The fleet's queues; on RabbitMQ classic and durable (see the module docstring)."""
    arguments = {"x-queue-type": "classic"} if is_amqp(settings.broker_url) else None
    return tuple(Queue(n, routing_key=n, queue_arguments=arguments) for n in QUEUE_NAMES)


def broker_transport(settings: Settings) -> str | None:
    """The embedded broker's writes must be atomic (see workers/broker.py)."""
    return "workers.broker:Transport" if settings.broker_url.startswith("filesystem") else None


def broker_options(settings: Settings) -> dict:
    """`broker_transport_options` for the broker of `settings`."""
    if settings.broker_url.startswith("filesystem"):
        # The embedded broker: one folder on disk, shared by the demo's processes.
        folder = VAR_DIR / "broker"
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
            # The default 1 s poll would add a second to every hop of a chain.
            "polling_interval": 0.05,
        }
    if is_amqp(settings.broker_url):
        return {}  # RabbitMQ redelivers on a dropped connection; it has no visibility timeout
    # Countdowns never exceed the sweep horizon (<= 30 min, enforced by Settings), so the
    # default 1 h visibility timeout never redelivers a waiting message.
    return {"visibility_timeout": 3600}


@dataclass(frozen=True)
class BrokerReading:
    """What the broker said: messages waiting per queue (not yet delivered to a worker: Redis'
    list length, RabbitMQ's ready count), and the worker processes that answered a ping."""

    depths: dict[str, int]
    workers: int


def read_broker(settings: Settings) -> BrokerReading | None:
    """Queue depths and live workers, or None (logged) when the broker cannot be read.

    One short-lived connection, so a scrape never shares (or breaks) the app's pools.
    """
    app = _reader(settings)
    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=READ_TIMEOUT_S)
            depths = {name: queue_depth(conn, name) for name in QUEUE_NAMES}
            workers = len(app.control.ping(timeout=PING_TIMEOUT_S, connection=conn))
        return BrokerReading(depths=depths, workers=workers)
    except Exception as exc:  # any transport's error: /metrics says broker_up 0 and goes on
        log.warning("metrics.broker_unreadable", error=type(exc).__name__)
        return None
    finally:
        app.close()


def queue_depth(conn: Connection, name: str) -> int:
    """Messages waiting in queue `name`: a passive declare (it creates nothing). A queue the
    broker does not know is empty: Redis drops an empty list, and on RabbitMQ no worker has
    declared it yet."""
    channel = conn.channel()
    try:
        return channel.queue_declare(queue=name, passive=True).message_count
    except conn.channel_errors:
        return 0
    finally:
        channel.close()


def bare_app(name: str, settings: Settings) -> Celery:
    """An app on the broker of `settings` with the fleet's queues and no tasks, never the
    current app: it reads the broker or publishes by task name (the tests, the bench)."""
    url = settings.broker_url
    app = Celery(name, broker=url, set_as_current=False)
    app.conf.update(
        # CELERY_BROKER_URL in the environment wins over `broker=`; these win over it.
        broker_read_url=url,
        broker_write_url=url,
        broker_transport=broker_transport(settings),
        broker_transport_options=broker_options(settings),
        task_queues=task_queues(settings),
        task_serializer="json",
        accept_content=["json"],
    )
    return app


def answers(broker_url: str, timeout_s: float = READ_TIMEOUT_S) -> bool:
    """True when a connection to `broker_url` opens (on RabbitMQ: its vhost, as its user)."""
    try:
        with Connection(broker_url, connect_timeout=timeout_s) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=timeout_s)
        return True
    except Exception:  # refused, reset, vhost or access refused: not usable
        return False


def purge(broker_url: str) -> int:
    """Drop every message waiting in the fleet's queues (tests, the drill, the bench); how many.
    A queue never declared is skipped."""
    app = bare_app("enrichment-purge", Settings(broker_url=broker_url))
    dropped = 0
    try:
        with app.connection_for_write() as conn:
            for name in QUEUE_NAMES:
                channel = conn.channel()
                try:
                    dropped += channel.queue_purge(name) or 0
                except conn.channel_errors:
                    pass  # not declared yet: nothing in it
                finally:
                    channel.close()
    finally:
        app.close()
    return dropped


def _reader(settings: Settings) -> Celery:
    app = bare_app("enrichment-metrics", settings)
    if settings.broker_url.startswith(("redis://", "rediss://")):
        timeouts = {"socket_timeout": READ_TIMEOUT_S, "socket_connect_timeout": READ_TIMEOUT_S}
        app.conf.broker_transport_options = {**app.conf.broker_transport_options, **timeouts}
    app.conf.broker_connection_timeout = READ_TIMEOUT_S
    return app
