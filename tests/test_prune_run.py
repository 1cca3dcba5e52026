"""The pruner as it runs: records archived and removed only once nothing refers to them, the
archive written before the delete commits (a crash between them loses nothing), beat's task
through a real worker, `enrichment prune`, and its counters on `/metrics`."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest
from sqlalchemy import select

from enrichment.core import prune_counts
from enrichment.core.models import (
    EnrichmentAttempt,
    ExceptionRecord,
    ResolutionAction,
    Review,
    utcnow,
)
from enrichment.core.settings_retention import ARCHIVE, RetentionConfig
from enrichment.history import archive, pruner
from enrichment.metrics import prom
from tests import retention_world as w
from tests.factories import make_tenant

NOW = utcnow()
FAST = RetentionConfig(prune_pause_s=0.0)
REMOVE_RECORDS = replace(FAST, records=ARCHIVE)


def archived_ids(directory, tenant: str, day, table: str) -> list[int]:
    return sorted(r["id"] for _t, rows in archive.read_day(directory, tenant, day, table=table)
                  for r in rows)  # fmt: skip


def test_records_are_archived_and_removed_only_once_nothing_refers_to_them(any_factory, tmp_path):
    # Given enriched records past the 365 days: one free (with an action), one reviewed, one
    # waiting in the audit sample, one with an event not delivered; and a younger one
    with any_factory.begin() as s:
        t = make_tenant(s, "acme", webhook_url="https://hooks.example/acme")
        free = w.enriched_record(s, t, NOW, 400)
        action = w.action(s, free)
        reviewed = w.enriched_record(s, t, NOW, 400, reviewed_at=NOW)
        s.add(Review(tenant_id=t.id, record_id=reviewed.id, kind="audit", reviewer="ann",
                     label="OTHER", actions=[]))  # fmt: skip
        queued = w.enriched_record(s, t, NOW, 400, audit_sample=True)
        waiting = w.enriched_record(s, t, NOW, 400)
        w.event(s, waiting, "pending", w.days_ago(NOW, 400))
        young = w.enriched_record(s, t, NOW, 300)
        free_id, day = free.id, free.created_at.date()
        kept = {reviewed.id, queued.id, waiting.id, young.id}
    # With no archive directory records are kept whatever the setting
    assert not pruner.prune(any_factory, REMOVE_RECORDS, now=NOW).removed
    # When a pass archives first
    report = pruner.prune(any_factory, REMOVE_RECORDS, now=NOW, archive_dir=tmp_path)
    # Then only the free record went, with its action, and both are in the archive
    assert report.removed == {"exception_records": 1, "resolution_actions": 1}
    with any_factory() as s:
        assert w.ids(s, ExceptionRecord) == kept
        assert w.rows(s, ResolutionAction) == 0
    assert archived_ids(tmp_path, "acme", day, "exception_records") == [free_id]
    assert archived_ids(tmp_path, "acme", day, "resolution_actions") == [action]


def old_attempts(factory, n: int) -> tuple[list[int], object]:
    with factory.begin() as s:
        rec = w.enriched_record(s, make_tenant(s, "acme"), NOW, 100)
        made = [w.attempt(s, rec, "completed", w.days_ago(NOW, 40)) for _ in range(n)]
        return made, w.days_ago(NOW, 40).date()


def test_a_failed_archive_write_removes_nothing(any_factory, tmp_path, monkeypatch):
    made, _day = old_attempts(any_factory, 3)

    def refuse(*_args, **_kw):
        raise OSError("disk full")

    monkeypatch.setattr(archive, "archive_rows", refuse)
    with pytest.raises(OSError):
        pruner.prune(any_factory, FAST, now=NOW, archive_dir=tmp_path)
    with any_factory() as s:
        assert w.ids(s, EnrichmentAttempt) == set(made)
        assert w.counters(s) == {}


def test_a_crash_after_the_archive_write_loses_nothing_and_archives_the_chunk_again(
    any_factory, tmp_path, monkeypatch
):
    made, day = old_attempts(any_factory, 3)

    # Given a process that dies after the archive write, before its delete commits
    def die(*_args, **_kw):
        raise SystemExit("killed")

    with monkeypatch.context() as m:
        m.setattr(prune_counts, "add", die)
        with pytest.raises(SystemExit):
            pruner.prune(any_factory, FAST, now=NOW, archive_dir=tmp_path)
    # Then the rows are still there, and archived
    with any_factory() as s:
        assert w.ids(s, EnrichmentAttempt) == set(made)
    assert archived_ids(tmp_path, "acme", day, "enrichment_attempts") == sorted(made)
    # When the next run goes: the rows go, and the archive holds them twice (a duplicate)
    pruner.prune(any_factory, FAST, now=NOW, archive_dir=tmp_path)
    with any_factory() as s:
        assert w.rows(s, EnrichmentAttempt) == 0
    assert archived_ids(tmp_path, "acme", day, "enrichment_attempts") == sorted(made * 2)


def test_the_counters_reach_metrics(factory):
    old_attempts(factory, 2)
    pruner.prune(factory, FAST, now=NOW)
    text = prom.exposition(factory).decode()
    assert 'enrichment_pruned_rows_total{table="enrichment_attempts",tenant="acme"} 2.0' in text
    assert 'enrichment_pruned_timestamp_seconds{table="enrichment_attempts",tenant="acme"}' in text


def test_the_cli_prints_what_a_dry_run_would_remove_then_what_the_pass_removed(factory, cli):
    old_attempts(factory, 2)
    code, out, _ = cli("prune", "--dry-run", "--tenant", "acme")
    assert code == 0 and out.splitlines() == [
        "would remove:",
        "  enrichment_attempts               2",
        "  total                             2",
    ]
    code, out, _ = cli("prune")
    assert code == 0 and out.splitlines()[0] == "removed:"
    assert out.splitlines()[-1].endswith("2 in 1 chunks")
    assert cli("prune") == (0, "nothing past retention\n", "")


def test_expired_silences_are_printed_per_table_and_reach_metrics(factory, cli):
    with factory.begin() as s:
        t = make_tenant(s, "acme")
        w.silence(s, t, w.days_ago(NOW, 120), w.days_ago(NOW, 100))
    code, out, _ = cli("prune", "--dry-run")
    assert code == 0 and "  alert_silences                    1" in out.splitlines()
    code, _out, _ = cli("prune")
    text = prom.exposition(factory).decode()
    assert code == 0
    assert 'enrichment_pruned_rows_total{table="alert_silences",tenant="acme"} 1.0' in text


def test_the_cli_names_an_unknown_tenant_in_one_line(factory, cli):
    code, out, err = cli("prune", "--tenant", "nobody")
    assert code == 64 and out == "" and len(err.strip().splitlines()) == 1 and "nobody" in err


def test_beat_schedules_the_pruner_and_a_worker_runs_it(settings, inproc_worker, factory):
    from beat_schedule import schedule
    from workers.tasks import prune_task

    entry = schedule(settings)["prune"]
    assert entry["task"] == prune_task.name == "enrichment.prune"
    assert entry["schedule"] == entry["options"]["expires"] == 3600.0
    made, _day = old_attempts(factory, 2)
    prune_task.apply_async()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with factory() as s:
            if not s.scalars(select(EnrichmentAttempt.id)).all():
                break
        time.sleep(0.1)
    with factory() as s:
        assert w.ids(s, EnrichmentAttempt) == set()
        assert w.counters(s) == {
            (s.scalar(select(ExceptionRecord.tenant_id)), "enrichment_attempts"): 2
        }


def test_a_row_another_transaction_holds_is_skipped_not_waited_for(factory):
    # Given three old attempts, one locked by another transaction (PostgreSQL)
    made, _day = old_attempts(factory, 3)
    holder = factory()
    holder.execute(
        select(EnrichmentAttempt).where(EnrichmentAttempt.id == made[0]).with_for_update()
    )
    try:
        # When a pass runs (in a thread, so a wait would show as a timeout, not a hang)
        done = []
        worker = threading.Thread(target=lambda: done.append(pruner.prune(factory, FAST, now=NOW)))
        worker.start()
        worker.join(timeout=30)
        # Then it finished without the locked row, and removed the other two
        assert done and done[0].removed == {"enrichment_attempts": 2}
    finally:
        holder.rollback()
        holder.close()
    # And the next pass takes it
    assert pruner.prune(factory, FAST, now=NOW).removed == {"enrichment_attempts": 1}
