"""Time partitions on PostgreSQL (history/partitions.py, retire.py): made ahead, retired whole
past retention while a referenced or younger one stays, the DEFAULT partition catching what
no range holds; SQLite keeps plain tables."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect, select, text

from enrichment.core import db, delivery_log
from enrichment.core.models import EnrichmentAttempt, OutboxEvent, Tenant
from enrichment.core.monitor_models import MetricSnapshot
from enrichment.core.settings_retention import RetentionConfig
from enrichment.history import archive, partitions, restore, retire_archive
from enrichment.history.partitions import LAYOUTS, floor, following
from enrichment.history.retire import retire
from tests import retention_world as w
from tests.conftest import migrate
from tests.factories import make_tenant

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=400)  # past every default retention (the longest is 180 days)


@pytest.fixture
def engine(factory, pg_url):
    """The test database's engine; the partitions a test made are dropped after it."""
    engine = db.get_engine(pg_url)
    before = _names(engine)
    yield engine
    with engine.begin() as conn:
        for name in _names(engine) - before:
            conn.execute(text(f"DROP TABLE IF EXISTS {name}"))  # retired meanwhile


def _names(engine) -> set[str]:
    with engine.connect() as conn:
        return {p.name for lay in LAYOUTS for p in partitions.partitions(conn, lay)}


def _home(s, model, row_id) -> str:
    """The partition holding the row."""
    q = select(text("tableoid::regclass::text")).select_from(model).where(model.id == row_id)
    return s.scalar(q)


def test_partitions_are_made_ahead_once(engine):
    made = partitions.make_ahead(engine, now=OLD)
    week = floor("week", OLD)
    assert "enrichment_attempts_p" + f"{week:%Y%m%d}" in made
    assert f"metric_snapshots_p{OLD:%Y%m}" in made
    assert len([n for n in made if n.startswith("outbox_events_p")]) == 5  # this week + 4
    with engine.connect() as conn:
        attempts = partitions.partitions(conn, LAYOUTS[0])
    starts = [p.lower for p in attempts if not p.is_default]
    early = [s for s in starts if s < NOW - timedelta(days=300)]
    assert early == [week + timedelta(days=7 * i) for i in range(5)]
    assert attempts[-1].is_default
    assert partitions.make_ahead(engine, now=OLD) == []  # nothing twice


def test_an_old_partition_is_dropped_and_a_referenced_or_younger_one_kept(engine, factory):
    partitions.make_ahead(engine, now=OLD)
    with factory.begin() as s:
        tenant = make_tenant(s, webhook_url="https://example.com/hook")
        rec = w.enriched_record(s, tenant, NOW, 400)
        old_attempt = w.attempt(s, rec, "succeeded", OLD)
        young_attempt = w.attempt(s, rec, "failed", NOW - timedelta(days=1))
        delivered = w.event(s, rec, "delivered", OLD, logged=2)
        stopped = w.event(s, rec, "stopped", OLD + timedelta(days=7))  # never pruned
        old_snap = w.snapshot(s, tenant, OLD)
        w.snapshot(s, tenant, NOW)
        old_home = _home(s, EnrichmentAttempt, old_attempt)
        stopped_home = _home(s, OutboxEvent, stopped)
        snap_home = _home(s, MetricSnapshot, old_snap)
    assert old_home != "enrichment_attempts_default"

    done = retire(engine, RetentionConfig(), now=NOW)

    old_events = old_home.replace("enrichment_attempts", "outbox_events")
    assert {old_home, old_events, snap_home} <= set(done.dropped)
    assert "undelivered" in done.kept[stopped_home]
    assert stopped_home not in done.dropped
    with factory() as s:
        assert w.ids(s, EnrichmentAttempt) == {young_attempt}
        assert s.get(EnrichmentAttempt, young_attempt).outcome == "failed"  # ORM identity: id
        assert w.ids(s, OutboxEvent) == {stopped}
        assert delivered not in w.ids(s, OutboxEvent)
        assert w.rows(s, delivery_log.WebhookDelivery) == 0
        assert old_snap not in w.ids(s, MetricSnapshot)
        assert w.counters(s)[(tenant.id, "enrichment_attempts")] == 1
        assert w.counters(s)[(tenant.id, "webhook_deliveries")] == 2
    assert old_home not in _names(engine)
    assert stopped_home in _names(engine)


def test_a_tenant_keeping_forever_keeps_the_partitions(engine, factory):
    partitions.make_ahead(engine, now=OLD)
    with factory.begin() as s:
        tenant = make_tenant(s, settings={"retention_days": {"attempts_failed": 0}})
        rec = w.enriched_record(s, tenant, NOW, 400)
        kept = w.attempt(s, rec, "succeeded", OLD)
    done = retire(engine, RetentionConfig(), now=NOW)
    assert not any(n.startswith("enrichment_attempts") for n in done.dropped)
    with factory() as s:
        assert w.ids(s, EnrichmentAttempt) == {kept}


def test_a_retired_partition_is_archived_first(engine, factory, tmp_path):
    partitions.make_ahead(engine, now=OLD)
    with factory.begin() as s:
        tenant = make_tenant(s)
        rec = w.enriched_record(s, tenant, NOW, 400)
        gone = w.attempt(s, rec, "succeeded", OLD)
        event = w.event(s, rec, "delivered", OLD, logged=1)
    retire(engine, RetentionConfig(), now=NOW, archive_dir=tmp_path)
    kept = dict(archive.read_day(tmp_path, "demo-3pl", OLD.date()))
    assert [r["id"] for r in kept["enrichment_attempts"]] == [gone]
    assert [r["id"] for r in kept["outbox_events"]] == [event]
    assert [r["event_id"] for r in kept["webhook_deliveries"]] == [event]


def test_the_default_partition_catches_a_row_out_of_range_then_moves_it(engine, factory):
    long_ago = NOW - timedelta(days=3000)
    with factory.begin() as s:
        rec = w.enriched_record(s, make_tenant(s), NOW, 1)
        row = w.attempt(s, rec, "succeeded", long_ago)
        assert _home(s, EnrichmentAttempt, row) == "enrichment_attempts_default"
    made = partitions.make_ahead(engine, now=long_ago)
    with factory() as s:
        assert _home(s, EnrichmentAttempt, row) == made[0]
        assert s.get(EnrichmentAttempt, row).created_at == long_ago


def test_sqlite_keeps_plain_tables(tmp_path):
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    migrate(url)
    engine = db.get_engine(url)
    names = set(inspect(engine).get_table_names())
    assert {"enrichment_attempts", "outbox_events", "metric_snapshots"} <= names
    assert not any(n.endswith("_default") for n in names)
    assert partitions.make_ahead(engine) == []
    assert retire(engine, RetentionConfig()).dropped == []


def _drop_newest(engine, layout=LAYOUTS[0]) -> str:
    """Drop the furthest partition the fleet makes ahead today; its name. Partitions further
    ahead, made by another test at a moved clock, stay: the fleet would not make those again
    today."""
    start = floor(layout.grain, datetime.now(UTC))
    for _ in range(layout.ahead):
        start = following(layout.grain, start)
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {layout.name(start)}"))
    return layout.name(start)


def test_beat_schedules_the_partitions_and_a_worker_makes_and_retires_them(
    settings, inproc_worker, engine, factory
):
    from beat_schedule import schedule
    from workers.tasks import partitions_task

    entry = schedule(settings)["partitions"]
    assert entry["task"] == partitions_task.name == "enrichment.partitions"
    gone = _drop_newest(engine)
    partitions.make_ahead(engine, now=OLD)
    with factory.begin() as s:
        rec = w.enriched_record(s, make_tenant(s), NOW, 400)
        old = w.attempt(s, rec, "succeeded", OLD)
        old_home = _home(s, EnrichmentAttempt, old)

    partitions_task.apply_async()

    deadline = time.monotonic() + 30
    while old_home in _names(engine) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert old_home not in _names(engine)
    assert gone in _names(engine)


def test_migrate_makes_the_partitions_ahead(engine, cli):
    gone = _drop_newest(engine)
    code, out, _ = cli("migrate")
    assert (code, out) == (0, "database migrated to head; 1 partitions made\n")
    assert gone in _names(engine)


def test_the_row_pruner_leaves_the_longest_kind_in_ranged_partitions_to_retire(engine, factory):
    from enrichment.history import pruner

    partitions.make_ahead(engine, now=OLD)
    with factory.begin() as s:
        rec = w.enriched_record(s, make_tenant(s), NOW, 600)
        short = w.attempt(s, rec, "succeeded", OLD)  # 30 days: pruned by rows
        ranged = w.attempt(s, rec, "failed", OLD)  # 180, the longest: its partition goes
        in_default = w.attempt(s, rec, "failed", OLD - timedelta(days=100))  # before every range
        assert _home(s, EnrichmentAttempt, in_default) == "enrichment_attempts_default"

    report = pruner.prune(factory, RetentionConfig(prune_pause_s=0.0))

    assert report.removed["enrichment_attempts"] == 2
    with factory() as s:
        assert w.ids(s, EnrichmentAttempt) == {ranged}
        assert short not in w.ids(s, EnrichmentAttempt)
    retire(engine, RetentionConfig(), now=NOW)
    with factory() as s:
        assert w.ids(s, EnrichmentAttempt) == set()


def test_a_partition_in_the_way_is_logged_and_the_others_are_made(engine):
    gone = _drop_newest(engine)
    events = _drop_newest(engine, LAYOUTS[1])
    day = datetime.strptime(gone.rsplit("_p", 1)[1], "%Y%m%d").replace(tzinfo=UTC)
    with engine.begin() as conn:  # someone's own daily partition inside the missing week
        conn.execute(text(
            "CREATE TABLE enrichment_attempts_by_hand PARTITION OF enrichment_attempts"
            f" FOR VALUES FROM ('{day + timedelta(days=2)}') TO ('{day + timedelta(days=3)}')"
        ))  # fmt: skip

    assert partitions.ensure(engine) == [events]

    assert gone not in _names(engine)


def _old_attempts(factory, tenants: dict[str, int]) -> tuple[dict[str, list[int]], str]:
    """`n` attempts per tenant name, all at OLD (ties on time: the id orders them), ids
    interleaved between tenants; and their partition."""
    made: dict[str, list[int]] = {name: [] for name in tenants}
    with factory.begin() as s:
        recs = {n: w.enriched_record(s, make_tenant(s, n), NOW, 400) for n in tenants}
        for i in range(max(tenants.values())):
            for name, rec in recs.items():
                if i < tenants[name]:
                    made[name].append(w.attempt(s, rec, "succeeded", OLD))
        return made, _home(s, EnrichmentAttempt, made[next(iter(tenants))][0])


def _archived(directory, tenant: str, table: str) -> list[int]:
    parts = archive.read_day(directory, tenant, OLD.date(), table=table)
    return sorted(r["id"] for _t, rows in parts for r in rows)


def test_a_partition_larger_than_a_chunk_is_archived_whole_then_dropped(engine, factory, tmp_path):
    # Given 7 + 3 old attempts of two tenants, an old event with 4 delivery-log rows and a
    # young one with 1, archived 3 rows a chunk
    partitions.make_ahead(engine, now=OLD)
    made, home = _old_attempts(factory, {"acme": 7, "zeta": 3})
    with factory.begin() as s:
        rec = w.enriched_record(s, make_tenant(s, "hooks"), NOW, 400)
        old_event = w.event(s, rec, "delivered", OLD, logged=4)
        young = w.event(s, rec, "delivered", NOW, logged=1)
    # When the partitions are retired
    done = retire(engine, RetentionConfig(), now=NOW, archive_dir=tmp_path, chunk_rows=3)
    # Then every row is in the archive once, in parts of at most a chunk, and the partition
    # is gone with its rows
    assert home in done.dropped and home not in _names(engine)
    for tenant, ids in made.items():
        assert _archived(tmp_path, tenant, "enrichment_attempts") == ids
        parts = archive.manifest(tmp_path, tenant, OLD.date())["parts"]
        sizes = [p["rows"] for p in parts if p["table"] == "enrichment_attempts"]
        assert sum(sizes) == len(ids) and max(sizes) <= 3
    assert _archived(tmp_path, "hooks", "outbox_events") == [old_event]
    logged = _archived(tmp_path, "hooks", "webhook_deliveries")
    assert len(logged) == 4 == len(set(logged))
    with factory() as s:
        assert w.ids(s, EnrichmentAttempt) == set()
        assert w.ids(s, OutboxEvent) == {young}
        assert w.rows(s, delivery_log.WebhookDelivery) == 1
        assert w.counters(s)[(rec.tenant_id, "webhook_deliveries")] == 4
    assert not list((tmp_path / retire_archive.PROGRESS_DIR).glob("*.json"))  # forgotten


def test_a_failure_between_chunks_keeps_the_partition_and_the_next_run_finishes_it(
    engine, factory, tmp_path, monkeypatch
):
    # Given 7 old attempts archived 3 a chunk, and a run that dies after writing the second
    # chunk to the archive, before recording it
    partitions.make_ahead(engine, now=OLD)
    made, home = _old_attempts(factory, {"acme": 7})
    save, calls = retire_archive._save, []

    def dies_on_the_second(*args):
        calls.append(args)
        if len(calls) == 2:
            raise OSError("killed")
        save(*args)

    with monkeypatch.context() as m:
        m.setattr(retire_archive, "_save", dies_on_the_second)
        with pytest.raises(OSError):
            retire(engine, RetentionConfig(), now=NOW, archive_dir=tmp_path, chunk_rows=3)
    # Then the partition and its rows stay, two chunks are in the archive
    assert home in _names(engine)
    with factory() as s:
        assert w.ids(s, EnrichmentAttempt) == set(made["acme"])
    assert _archived(tmp_path, "acme", "enrichment_attempts") == sorted(made["acme"][:6])
    # When the next run goes on: it archives from the second chunk, then drops the partition
    done = retire(engine, RetentionConfig(), now=NOW, archive_dir=tmp_path, chunk_rows=3)
    assert home in done.dropped
    archived = _archived(tmp_path, "acme", "enrichment_attempts")
    assert archived == sorted(made["acme"] + made["acme"][3:6])  # the second chunk twice
    # And a restore gives every row back once
    with factory.begin() as s:
        tenant_id = s.scalar(select(Tenant.id).where(Tenant.name == "acme"))
        rows = restore.read(tmp_path, "acme", OLD.date(), table="enrichment_attempts")
        (back,) = restore.restore(s, tenant_id, rows)
    assert (back.archived, back.inserted) == (10, 7)
    with factory() as s:
        assert w.ids(s, EnrichmentAttempt) == set(made["acme"])
