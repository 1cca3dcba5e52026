"""The monitor's metrics against real PostgreSQL, and the terminal status/report."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event
from sqlalchemy import text as sql
from sqlalchemy.exc import OperationalError

from enrichment.alerting import alert_store
from enrichment.cli import report as report_cli
from enrichment.core import db, text
from enrichment.core.models import EnrichmentAttempt, Tenant, utcnow
from enrichment.core.monitor_models import Alert, MetricSnapshot, SweepStat
from enrichment.core.settings import MonitorConfig, get_settings
from enrichment.metrics import prom
from enrichment.metrics.monitor import lock_tenants, quality_score, run_monitor
from tests.factories import make_record, make_tenant

CONFIG = MonitorConfig(window_s=3600.0)


def attempt(s, rec, outcome="completed", *, token="t1", latency_s=2.0, cost=0.01, at=None):
    s.add(
        EnrichmentAttempt(
            tenant_id=rec.tenant_id,
            record_id=rec.id,
            stage="classification",
            outcome=outcome,
            latency_s=latency_s,
            provider="local",
            cost_usd=cost,
            lease_token=token,
            created_at=at or utcnow(),
        )
    )


@pytest.fixture
def seeded(factory):
    """Tenant a-3pl: 2 enriched, 1 escalated (retry 6), 1 stuck NULL for 2 days, 1 new.
    Tenant b-3pl: 3 enriched records that must never leak into a-3pl's numbers."""
    now = utcnow()
    with factory.begin() as s:
        a = make_tenant(s, "a-3pl")
        b = make_tenant(s, "b-3pl")
        e1 = make_record(
            s, a, ai_label="OTHER", ai_confidence=0.95, enriched_at=now - timedelta(minutes=10),
            created_at=now - timedelta(minutes=40),
        )  # fmt: skip
        e2 = make_record(
            s, a, ai_label="OTHER", ai_confidence=0.72, enriched_at=now - timedelta(hours=3),
            created_at=now - timedelta(hours=4),
        )  # fmt: skip
        esc = make_record(
            s, a, ai_label="OTHER", ai_confidence=0.31, escalated_at=now, enrichment_retry_count=6
        )
        stuck = make_record(s, a, created_at=now - timedelta(days=2))
        make_record(s, a)
        for _ in range(3):
            make_record(s, b, ai_label="OTHER", ai_confidence=0.05, enriched_at=now)
        attempt(s, e1, token="c1", latency_s=3.0, cost=0.02)
        attempt(s, e1, token="c1", latency_s=1.0, cost=0.02)
        attempt(s, stuck, "failed", token="c2", latency_s=2.0, cost=0.0)
        attempt(s, esc, "completed", token="c3", latency_s=2.0, cost=0.01)
        attempt(s, e2, token="old", at=now - timedelta(hours=3))  # outside the window
    return now


def snap_of(snaps, name):
    return next(s for s in snaps if s.tenant == name)


def test_snapshot_metrics_for_one_tenant(factory, settings, seeded):
    snap = snap_of(run_monitor(factory, settings, config=CONFIG), "a-3pl")
    assert (snap.total_records, snap.enriched_records) == (5, 2)
    assert snap.completeness_pct == pytest.approx(40.0)
    assert (snap.backlog_records, snap.escalated_records) == (2, 1)
    assert snap.classified_records == 3 and snap.high_confidence_pct == pytest.approx(200 / 3)
    assert snap.confidence_buckets["0.9-1.0"] == 1 and snap.confidence_buckets["0.3-0.4"] == 1
    assert snap.confidence_buckets["0.7-0.8"] == 1 and sum(snap.confidence_buckets.values()) == 3
    assert (snap.window_attempts, snap.window_failed_attempts) == (4, 1)
    assert snap.failure_rate_pct == pytest.approx(25.0)
    assert snap.window_chains == 3 and snap.pipeline_success_pct == pytest.approx(200 / 3)
    assert snap.window_ai_cost_usd == pytest.approx(0.05)
    assert snap.processing_duration_s == pytest.approx(8.0)
    assert snap.avg_processing_time_s == pytest.approx(8.0 / 3)  # 3 distinct records
    assert snap.records_per_hour == pytest.approx(1.0)
    assert snap.time_to_enrich_s == pytest.approx(1800.0, abs=1.0)


def test_integrity_checks_are_stored_in_the_row(factory, settings, seeded):
    snap = snap_of(run_monitor(factory, settings, config=CONFIG), "a-3pl")
    with factory() as s:
        row = s.get(MetricSnapshot, snap.id)
    assert row.integrity["stuck_null_over_1d"] == {"value": 1, "target": 0, "ok": False}
    assert row.integrity["retry_count_above_max"]["value"] == 1
    assert row.integrity["high_confidence_rate"]["ok"] is False  # 66.7 % < 80 %
    assert row.quality_score == pytest.approx(snap.quality_score)


def test_other_tenant_numbers_do_not_leak(factory, settings, seeded):
    snap = snap_of(run_monitor(factory, settings, config=CONFIG), "b-3pl")
    assert (snap.total_records, snap.completeness_pct, snap.window_attempts) == (3, 100.0, 0)
    assert snap.confidence_buckets["0.0-0.1"] == 3 and snap.failure_rate_pct is None


def test_counters_accumulate_only_new_attempts(factory, settings, seeded):
    first = snap_of(run_monitor(factory, settings, config=CONFIG), "a-3pl")
    assert first.attempts_total == 5  # the first snapshot counts the whole history
    with factory.begin() as s:
        rec = make_record(s, _tenant(s, "a-3pl"))
        attempt(s, rec, "failed", token="c9", cost=0.5)
    second = snap_of(run_monitor(factory, settings, config=CONFIG), "a-3pl")
    assert second.attempts_total == 6 and second.failed_attempts_total == 2
    assert second.ai_cost_usd_total == pytest.approx(first.ai_cost_usd_total + 0.5)


def _tenant(s, name):
    return s.query(Tenant).filter_by(name=name).one()


def test_empty_tenant_has_no_data_not_zero(factory, settings):
    with factory.begin() as s:
        make_tenant(s, "empty-3pl")
    [snap] = run_monitor(factory, settings, config=CONFIG)
    assert snap.completeness_pct is None and snap.quality_score is None
    assert snap.backlog_records == 0 and snap.integrity["high_confidence_rate"]["ok"] is None


def test_a_handful_of_queries_per_tenant_whatever_the_size(factory, settings, seeded):
    engine = db.get_engine(settings.database_url)
    statements = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        run_monitor(factory, settings, config=CONFIG)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    # 1 tenant list + per tenant: previous snapshot, the tallies' fold, the tallies, the
    # records' bounded reads (windows, the review queue's head, the lead time), attempts (with
    # today's spend), events, due records (with the last sweep), the audit window (the error
    # rate of automated decisions), insert.
    assert len(statements) <= 1 + 2 * 9


def test_quality_score_weights_and_missing_parts():
    assert quality_score(90.0, 80.0, 10.0, CONFIG) == pytest.approx(0.4 * 90 + 0.4 * 80 + 18)
    # No attempts in the window: the success part drops out and weights renormalise.
    assert quality_score(90.0, 80.0, None, CONFIG) == pytest.approx(85.0)
    weights = MonitorConfig(
        weight_high_confidence=0, weight_completeness=1, weight_attempt_success=0
    )
    assert quality_score(10.0, 70.0, 90.0, weights) == pytest.approx(70.0)
    assert quality_score(None, None, None, CONFIG) is None


@pytest.fixture
def cli_env(monkeypatch, settings):
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_cli_status_and_report_print_and_exit_by_status(factory, seeded, cli_env, capsys):
    # Rate metrics need 50 records; the escalated record alone makes it a warning.
    assert report_cli.status("a-3pl") == 1
    out = capsys.readouterr().out
    assert "a-3pl: WARNING" in out and "escalated_warning" in out and "40.0 %" in out
    assert report_cli.report("a-3pl") == 1
    out = capsys.readouterr().out
    assert "confidence distribution" in out
    assert "Records still without an AI label after a day: 1 record (target 0) FAILING" in out


def test_cli_names_thresholds_in_plain_words_and_counts_in_the_singular(
    factory, seeded, cli_env, capsys
):
    report_cli.status("a-3pl")
    out = capsys.readouterr().out
    assert "escalated           1 record\n" in out and "1 records" not in out
    assert "more than 0 records escalated to a person (warning: escalated_warning)" in out
    report_cli.report("a-3pl")
    out = capsys.readouterr().out
    assert "completeness under 70 % (completeness_critical): now 40.0 %, not judged: " in out
    assert "escalated to a person: 1 record" in out


def test_cli_report_shows_a_fast_providers_time_per_record_not_zero(factory, cli_env, capsys):
    # The local provider answers in milliseconds: "0.0 s" read as "nothing was measured".
    now = utcnow()
    with factory.begin() as s:
        a = make_tenant(s, "a-3pl")
        for _ in range(2):
            rec = make_record(
                s, a, ai_confidence=0.9, created_at=now - timedelta(seconds=44), enriched_at=now
            )
            for _ in range(3):  # three stages, 1.5 ms each
                attempt(s, rec, latency_s=0.0015, cost=0.0, at=now)
    report_cli.report("a-3pl")
    out = capsys.readouterr().out
    assert "AI time per record    4.5 ms" in out and " 0.0 s" not in out
    assert "creation to enriched  44 s (mean)" in out
    assert "enriched              2 records (2 per hour)" in out


def test_cli_status_is_critical_when_backlog_crosses_a_tenant_threshold(
    factory, seeded, cli_env, capsys
):
    with factory.begin() as s:
        _tenant(s, "a-3pl").settings = {"alert_thresholds": {"backlog_critical": 1}}
    assert report_cli.status("a-3pl") == 2
    assert "backlog_critical" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(None, "no data"), (0.0004, "0.4 ms"), (0.012, "12 ms"), (3.0, "3 s"), (44.25, "44.2 s"),
     (3600.0, "60 min"), (5400.0, "90 min"), (9000.0, "2.5 h")],
)  # fmt: skip
def test_durations_are_shown_in_a_unit_that_fits(seconds, expected):
    assert text.duration(seconds) == expected


def test_plural_forms():
    assert [text.plural(n, "record") for n in (0, 1, 2, 1500)] == [
        "0 records", "1 record", "2 records", "1,500 records",
    ]  # fmt: skip


def test_cli_unknown_tenant(factory, cli_env, capsys):
    assert report_cli.status("nope") == report_cli.UNKNOWN_TENANT
    assert "unknown tenant" in capsys.readouterr().err


def test_two_beats_scheduling_the_monitor_snapshot_each_tenant_once(factory, settings, seeded):
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import func, select

    from enrichment.alerting import dispatch

    def one_run(_):
        snaps = run_monitor(factory, settings, config=CONFIG, pace=150.0)
        dispatch.run_alerts(factory, snaps, settings)
        return len(snaps)

    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(one_run, range(2)))
    with factory() as s:
        snapshots = s.scalar(select(func.count()).select_from(MetricSnapshot))
        tenants = s.scalar(select(func.count()).select_from(Tenant))
    assert snapshots == tenants == sum(runs)
    assert sorted(runs) == [0, tenants]


def test_a_run_that_took_its_clock_earlier_still_sees_the_other_runs_snapshot(
    factory, settings, seeded
):
    # Two beats: the second computed `now` a moment before the first, then waited on the
    # tenant lock. The first run's snapshot is stamped after the second's `now`.
    later = utcnow()
    first = run_monitor(factory, settings, now=later, config=CONFIG, pace=150.0)
    second = run_monitor(
        factory, settings, now=later - timedelta(seconds=1), config=CONFIG, pace=150.0
    )
    assert len(first) == 2 and second == []


@pytest.fixture
def queued(factory):
    """Tenant a-3pl's review queue: escalated 2 h ago, audit-sampled and resolved 30 h ago,
    one escalation and one audit a person decided, and a resolved record not sampled.
    Tenant b-3pl: an escalation 3 days old, which must not age a-3pl's queue."""
    now = utcnow()
    with factory.begin() as s:
        a, b = make_tenant(s, "a-3pl"), make_tenant(s, "b-3pl")
        make_record(s, a, escalated_at=now - timedelta(hours=2))
        make_record(s, a, enriched_at=now - timedelta(hours=30), audit_sample=True)
        decided = dict(decided_by="human", reviewed_at=now, final_label="OTHER")
        make_record(s, a, escalated_at=now - timedelta(hours=5), **decided)
        make_record(s, a, enriched_at=now - timedelta(days=2), audit_sample=True, **decided)
        make_record(s, a, enriched_at=now)
        make_record(s, b, escalated_at=now - timedelta(days=3))
    return now


def test_the_review_queue_is_counted_in_the_record_pass(factory, settings, queued):
    snaps = run_monitor(factory, settings, now=queued, config=CONFIG)
    a, b = snap_of(snaps, "a-3pl"), snap_of(snaps, "b-3pl")
    assert (a.review_backlog, a.human_resolved_records) == (2, 2)
    assert a.oldest_review_age_s == pytest.approx(30 * 3600, abs=1)
    assert a.escalated_records == 1  # the reviewed escalation is closed
    assert b.review_backlog == 1 and b.oldest_review_age_s == pytest.approx(3 * 86400, abs=1)
    with factory() as s:
        row = s.get(MetricSnapshot, a.id)
    assert (row.review_backlog, row.human_resolved_records) == (2, 2)
    assert row.oldest_review_age_s == pytest.approx(a.oldest_review_age_s)


def test_an_empty_queue_has_no_age_not_zero(factory, settings, seeded):
    snap = snap_of(run_monitor(factory, settings, config=CONFIG), "b-3pl")
    assert (snap.review_backlog, snap.oldest_review_age_s, snap.human_resolved_records) == (
        0,
        None,
        0,
    )


def test_a_day_old_review_item_fires_the_review_age_alert(factory, settings, queued):
    snaps = run_monitor(factory, settings, now=queued, config=CONFIG)
    with factory.begin() as s:
        for snap in snaps:
            alert_store.evaluate_tenant(s, snap, {}, settings.alerts, now=queued)
    with factory() as s:
        rows = {(r.tenant_id, r.metric): r for r in s.query(Alert).filter_by(metric="review_age")}
    fired = {tid: r.state for (tid, _), r in rows.items()}
    assert sorted(fired.values()) == ["firing", "firing"]  # 30 h and 3 days: both over 24 h
    a = snap_of(snaps, "a-3pl")
    assert rows[(a.tenant_id, "review_age")].value == pytest.approx(30 * 3600, abs=1)


def test_prometheus_exposes_the_review_gauges(factory, settings, queued):
    run_monitor(factory, settings, now=queued, config=CONFIG)
    text = prom.exposition(factory).decode()
    assert 'enrichment_review_backlog_records{tenant="a-3pl"} 2.0' in text
    assert 'enrichment_human_resolved_records{tenant="a-3pl"} 2.0' in text
    assert 'enrichment_oldest_review_age_seconds{tenant="a-3pl"} 108000.0' in text


@pytest.fixture
def starving(factory):
    """Tenant a-3pl (budget $1): due 20 min ago, due 5 min ago, due 20 min ago but leased,
    due 20 min ago with no retries left, due in an hour; $0.70 + $0.40 spent today and $5
    yesterday; the last sweep saw 3 due and claimed 0. Tenant b-3pl: one record due an hour
    ago, which must not age a-3pl's backlog."""
    now = utcnow().replace(hour=12)
    ago = lambda **kw: now - timedelta(**kw)  # noqa: E731
    with factory.begin() as s:
        a = make_tenant(s, "a-3pl", settings={"daily_budget_usd": 1.0})
        b = make_tenant(s, "b-3pl")
        old = make_record(s, a, next_attempt_at=ago(minutes=20))
        make_record(s, a, next_attempt_at=ago(minutes=5))
        lease = dict(lease_token="t", lease_expires_at=now + timedelta(minutes=5))
        make_record(s, a, next_attempt_at=ago(minutes=20), **lease)
        make_record(s, a, next_attempt_at=ago(minutes=30), enrichment_retry_count=6)
        make_record(s, a, next_attempt_at=now + timedelta(hours=1))
        make_record(s, b, next_attempt_at=ago(hours=1))
        attempt(s, old, cost=0.7, at=ago(hours=2))
        attempt(s, old, cost=0.4, at=ago(minutes=1))
        attempt(s, old, cost=5.0, at=ago(hours=13))  # yesterday (UTC)
        s.add(SweepStat(tenant_id=a.id, swept_at=ago(seconds=30), due=3, claimed=0))
    return now


def test_due_records_their_age_the_last_sweep_and_todays_spend(factory, settings, starving):
    snaps = run_monitor(factory, settings, now=starving, config=CONFIG)
    a, b = snap_of(snaps, "a-3pl"), snap_of(snaps, "b-3pl")
    assert a.due_records == 2 and a.oldest_due_age_s == pytest.approx(1200, abs=1)
    assert (a.last_sweep_due, a.last_sweep_claimed) == (3, 0)
    assert a.spend_today_usd == pytest.approx(1.1)
    assert (b.due_records, b.last_sweep_due, b.spend_today_usd) == (1, 0, 0.0)
    assert b.oldest_due_age_s == pytest.approx(3600, abs=1)
    with factory() as s:
        row = s.get(MetricSnapshot, a.id)
    assert (row.due_records, row.last_sweep_due, row.last_sweep_claimed) == (2, 3, 0)
    assert row.spend_today_usd == pytest.approx(1.1) and row.oldest_due_age_s > 1199


def test_todays_spend_counts_new_attempts_and_restarts_at_midnight(factory, settings, starving):
    run_monitor(factory, settings, now=starving, config=CONFIG)
    with factory.begin() as s:
        rec = make_record(s, _tenant(s, "a-3pl"))
        attempt(s, rec, cost=0.25, at=starving + timedelta(minutes=1))
    later = snap_of(run_monitor(factory, settings, now=starving + timedelta(minutes=5)), "a-3pl")
    assert later.spend_today_usd == pytest.approx(1.35)
    tomorrow = starving + timedelta(hours=12, minutes=1)
    assert snap_of(run_monitor(factory, settings, now=tomorrow), "a-3pl").spend_today_usd == 0.0


def test_starvation_and_budget_alerts_fire_per_tenant(factory, settings, starving):
    snaps = run_monitor(factory, settings, now=starving, config=CONFIG)
    with factory.begin() as s:
        for snap in snaps:
            tenant_settings = s.get(Tenant, snap.tenant_id).settings
            alert_store.evaluate_tenant(s, snap, tenant_settings, settings.alerts, now=starving)
    with factory() as s:
        rows = s.query(Alert).filter(Alert.metric.in_(["starvation", "budget"])).all()
        names = {(s.get(Tenant, r.tenant_id).name, r.metric): r.state for r in rows}
    assert names == {
        ("a-3pl", "starvation"): "firing",  # 20 min > 15 min
        ("a-3pl", "budget"): "firing",  # $1.10 >= $1.00
        ("b-3pl", "starvation"): "firing",  # an hour; b-3pl has no budget: no budget rule
    }


def test_prometheus_exposes_the_starvation_and_budget_gauges(factory, settings, starving):
    run_monitor(factory, settings, now=starving, config=CONFIG)
    text = prom.exposition(factory).decode()
    assert 'enrichment_due_records{tenant="a-3pl"} 2.0' in text
    assert 'enrichment_oldest_due_age_seconds{tenant="a-3pl"} 1200.0' in text
    assert 'enrichment_last_sweep_due_records{tenant="a-3pl"} 3.0' in text
    assert 'enrichment_last_sweep_claimed_records{tenant="a-3pl"} 0.0' in text
    assert 'enrichment_spend_today_usd{tenant="a-3pl"} 1.1' in text


def test_a_monitor_runs_lock_waits_for_another_run_never_for_a_new_record(factory):
    with factory.begin() as s:
        tenant_id = make_tenant(s, "locked-3pl").id
    with factory.begin() as holding:
        assert [t.id for t in lock_tenants(holding)] == [tenant_id]
        with factory.begin() as writer:  # ingestion: its insert checks the foreign key
            writer.execute(sql("SET LOCAL lock_timeout = '2s'"))
            make_record(writer, writer.get(Tenant, tenant_id))
        with pytest.raises(OperationalError, match="lock timeout"), factory.begin() as second:
            second.execute(sql("SET LOCAL lock_timeout = '200ms'"))
            lock_tenants(second)
