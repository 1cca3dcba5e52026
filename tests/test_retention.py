"""Retention: the pruner removes exactly what is past its kind's days and nothing still
referred to, per tenant, in bounded chunks; a dry run counts the same and removes nothing.
On PostgreSQL and SQLite alike (by rows)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from enrichment.core.batch_models import Batch, BatchRecord
from enrichment.core.delivery_log import WebhookDelivery
from enrichment.core.models import EnrichmentAttempt, OutboxEvent, utcnow
from enrichment.core.monitor_models import Alert, AlertSilence, MetricSnapshot
from enrichment.core.settings_retention import RetentionConfig
from enrichment.history import pruner
from enrichment.history.retention import POLICIES
from tests import retention_world as w
from tests.factories import make_tenant

NOW = utcnow()
FAST = RetentionConfig(prune_pause_s=0.0)


def build(s):
    """One tenant with rows of every kind on both sides of the default retention; returns
    the ids the pruner must remove and must keep, per model."""
    t = make_tenant(s, "acme", webhook_url="https://hooks.example/acme")
    ago = lambda days: w.days_ago(NOW, days)  # noqa: E731
    done = w.enriched_record(s, t, NOW, 400)
    person = w.enriched_record(s, t, NOW, 400, escalated_at=ago(399), reviewed_at=ago(398))
    gone, kept = {}, {}
    gone[EnrichmentAttempt] = {w.attempt(s, done, "completed", ago(31)),
                               w.attempt(s, done, "failed", ago(181))}  # fmt: skip
    kept[EnrichmentAttempt] = {
        w.attempt(s, done, "completed", ago(29)),  # recent success
        w.attempt(s, done, "failed", ago(31)),  # a failure keeps 180 days
        w.attempt(s, person, "completed", ago(31)),  # the record went to a person
    }
    gone[OutboxEvent] = {w.event(s, done, "delivered", ago(8), logged=2),
                         w.event(s, done, "dead", ago(91), logged=1)}  # fmt: skip
    kept[OutboxEvent] = {
        w.event(s, done, "delivered", ago(6), logged=1),
        w.event(s, done, "dead", ago(89)),
        w.event(s, done, "pending", ago(300)),  # not delivered yet: the webhook will get it
        w.event(s, done, "stopped", ago(300), logged=1),  # a person must look
    }
    gone[MetricSnapshot] = {w.snapshot(s, t, ago(40)), w.snapshot(s, t, ago(35))}
    kept[MetricSnapshot] = {w.snapshot(s, t, ago(33))}  # the newest, though old
    gone[Alert] = {w.alert(s, t, "backlog", "inactive", ago(91))}
    kept[Alert] = {w.alert(s, t, "failure_rate", "firing", ago(300)),
                   w.alert(s, t, "completeness", "inactive", ago(89))}  # fmt: skip
    gone[Batch] = {w.batch(s, t, "applied", ago(31), records=[done, person])}
    kept[Batch] = {w.batch(s, t, "given_up", ago(89)), w.batch(s, t, "ended", ago(300))}
    return t, gone, kept


def present(s) -> dict:
    return {m: w.ids(s, m) for m in (EnrichmentAttempt, OutboxEvent, MetricSnapshot, Alert, Batch)}


def test_a_pass_removes_exactly_what_is_past_retention_and_nothing_still_referred_to(
    any_factory,
):
    # Given rows of every kind, old and recent, finished and not
    with any_factory.begin() as s:
        t, gone, kept = build(s)
        before = present(s)
    # When one pass runs
    report = pruner.prune(any_factory, FAST, now=NOW)
    # Then exactly the rows past retention went, with their delivery-log and batch rows
    with any_factory() as s:
        after = present(s)
        for model in before:
            assert after[model] == before[model] - gone[model], model.__tablename__
            assert kept[model] <= after[model]
        assert w.rows(s, BatchRecord) == 0
        assert w.rows(s, WebhookDelivery) == 2  # the kept delivered and stopped events' rows
        # and the counters /metrics reads say the same
        assert w.counters(s) == {(t.id, name): n for name, n in report.removed.items()}
    assert report.removed == {
        "enrichment_attempts": 2, "outbox_events": 2, "webhook_deliveries": 3,
        "metric_snapshots": 2, "alerts": 1, "batches": 1, "batch_records": 2,
    }  # fmt: skip
    assert report.complete
    # And a second pass finds nothing
    assert not pruner.prune(any_factory, FAST, now=NOW).removed


def test_a_dry_run_removes_nothing_and_counts_what_the_pass_then_removes(any_factory):
    with any_factory.begin() as s:
        build(s)
        before = present(s)
    dry = pruner.prune(any_factory, FAST, now=NOW, dry_run=True)
    with any_factory() as s:
        assert present(s) == before
        assert w.counters(s) == {}
    real = pruner.prune(any_factory, FAST, now=NOW)
    assert dry.dry_run and dry.removed == real.removed and sum(real.removed.values()) == 13


def test_a_tenant_override_wins_for_that_tenant_only(any_factory):
    # Given three tenants with the same rows: one default, one keeping successes 5 days, one
    # keeping them forever (0)
    with any_factory.begin() as s:
        made = {}
        for name, own in [("plain", {}), ("short", {"attempts_succeeded": 5}),
                          ("forever", {"attempts_succeeded": 0})]:  # fmt: skip
            t = make_tenant(s, name, settings={"retention_days": own})
            rec = w.enriched_record(s, t, NOW, 500)
            made[name] = [w.attempt(s, rec, "completed", w.days_ago(NOW, d)) for d in (10, 400)]
    pruner.prune(any_factory, FAST, now=NOW)
    with any_factory() as s:
        left = w.ids(s, EnrichmentAttempt)
    assert left == {made["plain"][0], *made["forever"]}


def test_a_pass_for_one_tenant_leaves_the_others(any_factory):
    with any_factory.begin() as s:
        recs = {n: w.enriched_record(s, make_tenant(s, n), NOW, 100) for n in ("a", "b")}
        old = {n: w.attempt(s, r, "completed", w.days_ago(NOW, 40)) for n, r in recs.items()}
        a_id = recs["a"].tenant_id
    report = pruner.prune(any_factory, FAST, now=NOW, tenant_id=a_id)
    with any_factory() as s:
        assert w.ids(s, EnrichmentAttempt) == {old["b"]}
    assert report.removed == {"enrichment_attempts": 1}


def test_chunks_are_bounded_and_a_time_limit_stops_the_pass_between_them(any_factory):
    with any_factory.begin() as s:
        rec = w.enriched_record(s, make_tenant(s, "acme"), NOW, 100)
        for _ in range(25):
            w.attempt(s, rec, "completed", w.days_ago(NOW, 40))
    small = replace(FAST, prune_chunk_rows=10)
    # A time limit already spent: one chunk of 10, then it stops, incomplete
    first = pruner.prune(any_factory, small, now=NOW, max_s=0.0)
    assert (first.removed["enrichment_attempts"], first.chunks, first.complete) == (10, 1, False)
    # The next pass goes on: two chunks, 10 and 5
    rest = pruner.prune(any_factory, small, now=NOW)
    assert (rest.removed["enrichment_attempts"], rest.chunks, rest.complete) == (15, 2, True)


def test_the_policies_cover_every_kind_of_retention_once():
    from enrichment.core.settings_retention import RETAINED

    assert sorted(p.kind for p in POLICIES) == sorted(RETAINED)


@pytest.mark.parametrize("kind", ["attempts_succeeded", "events_delivered", "snapshots"])
def test_zero_days_keeps_a_kind_forever(any_factory, kind):
    config = replace(FAST, **{f"{kind}_days": 0})
    with any_factory.begin() as s:
        build(s)
    report = pruner.prune(any_factory, config, now=NOW, dry_run=True)
    table = next(p.table.name for p in POLICIES if p.kind == kind)
    full = pruner.prune(any_factory, FAST, now=NOW, dry_run=True)
    assert report.removed[table] < full.removed[table]


@pytest.mark.parametrize(
    ("own", "named"),
    [({"attempt": 5}, "retention_days.attempt"), ({"records": 1.5}, "retention_days.records")],
)
def test_a_bad_override_is_refused_on_write_in_one_line(own, named):
    from enrichment.core.tenant_settings import TenantSettings, TenantSettingsError

    with pytest.raises(TenantSettingsError) as err:
        TenantSettings.validate({"retention_days": own})
    assert named in str(err.value) and "\n" not in str(err.value)
    # and on read it is dropped, so the kind keeps the fleet's days
    assert TenantSettings.parse({"retention_days": own}).retention_days == {}


def test_each_chunk_starts_at_the_last_ones_time_and_rows_sharing_it_all_go(any_factory):
    # Given 5 old attempts with one timestamp, and chunks of 2
    with any_factory.begin() as s:
        rec = w.enriched_record(s, make_tenant(s, "acme"), NOW, 100)
        for _ in range(5):
            w.attempt(s, rec, "completed", w.days_ago(NOW, 40))
    report = pruner.prune(any_factory, replace(FAST, prune_chunk_rows=2), now=NOW)
    # Then the ties at each chunk's boundary are not skipped: 2, 2, 1
    assert (report.removed["enrichment_attempts"], report.chunks) == (5, 3)


def test_a_silence_goes_its_days_after_its_end_and_a_tenant_override_wins(any_factory):
    # Given silences ended 91 and 89 days ago and one still muting, for a tenant on the
    # default 90 days and one keeping silences 10 days
    ago = lambda days: w.days_ago(NOW, days)  # noqa: E731
    with any_factory.begin() as s:
        plain, short = (
            make_tenant(s, "plain"),
            make_tenant(s, "short", settings={"retention_days": {"silences": 10}}),
        )
        gone = {w.silence(s, plain, ago(92), ago(91)), w.silence(s, short, ago(12), ago(11))}
        kept = {
            w.silence(s, plain, ago(90), ago(89)),
            w.silence(s, plain, ago(200), ago(-1)),  # still muting, begun long ago
            w.silence(s, short, ago(10), ago(9)),
            w.silence(s, short, ago(1), ago(-1)),
        }
    # When a dry run, then a pass, run
    dry = pruner.prune(any_factory, FAST, now=NOW, dry_run=True)
    report = pruner.prune(any_factory, FAST, now=NOW)
    # Then the silences past their tenant's days since their end went, and were counted
    with any_factory() as s:
        assert w.ids(s, AlertSilence) == kept
        assert w.counters(s) == {(plain.id, "alert_silences"): 1, (short.id, "alert_silences"): 1}
    assert dry.removed == report.removed == {"alert_silences": len(gone)}
