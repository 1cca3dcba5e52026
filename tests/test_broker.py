"""The embedded broker: kombu's filesystem transport with atomic message writes; and the
queue depths /metrics reads from a broker (Redis here; RabbitMQ in tests/test_rabbitmq.py)."""

import json
import os
from pathlib import Path

import pytest
from kombu import Connection

from enrichment.core.settings import Settings
from tests.conftest import REDIS_URL
from tests.fleet import publisher
from workers import queues

OPTIONS = ("data_folder_in", "data_folder_out", "control_folder")


@pytest.fixture
def conn(tmp_path):
    for name in ("queue", "control"):
        (tmp_path / name).mkdir()
    options = {
        k: str(tmp_path / ("control" if k == "control_folder" else "queue")) for k in OPTIONS
    }
    with Connection(
        "filesystem://", transport="workers.broker:Transport", transport_options=options
    ) as c:
        yield c


def test_a_message_round_trips(conn):
    # Its own queue name: kombu's virtual transports share broker state per process.
    queue = conn.SimpleQueue("roundtrip")
    queue.put({"record_id": 7})
    assert queue.get(timeout=5).payload == {"record_id": 7}
    queue.close()


def test_a_message_file_appears_only_once_fully_written(conn, tmp_path, monkeypatch):
    # kombu's own transport creates "<id>.celery.msg" and then writes it: a worker polling in
    # between read an empty message and died (JSONDecodeError). Ours renames a finished file.
    at_rename = []

    def spy(src, dst):
        at_rename.append(([p.name for p in (tmp_path / "queue").iterdir()], Path(src).read_bytes()))
        return real_replace(src, dst)

    real_replace = os.replace
    monkeypatch.setattr("workers.broker.os.replace", spy)
    queue = conn.SimpleQueue("celery")
    queue.put({"record_id": 8})
    [(names, content)] = at_rename
    assert names and all(n.endswith(".msg.tmp") for n in names)
    assert json.loads(content)["body"]
    assert queue.get(timeout=5).payload == {"record_id": 8}
    queue.close()


def test_queue_depths_are_read_from_redis_without_taking_a_message(redis_client):
    app = publisher(REDIS_URL)
    try:
        for _ in range(2):
            app.send_task("enrichment.analyze", (0, "no-such-token"))
    finally:
        app.close()

    first, again = (queues.read_broker(Settings(broker_url=REDIS_URL)) for _ in range(2))

    assert first == again == queues.BrokerReading(depths={"celery": 2, "control": 0}, workers=0)
    assert redis_client.llen("celery") == 2


def test_a_broker_that_does_not_answer_reads_as_nothing():
    assert queues.read_broker(Settings(broker_url="redis://127.0.0.1:1/0")) is None
