"""Alert decisions: pure functions first (no services), then the state in PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from enrichment.alerting import alert_store, alerts
from enrichment.alerting.alerts import AlertState, evaluate, plan, rules_for
from enrichment.core.monitor_models import Alert, AlertSilence
from enrichment.core.settings import AlertPolicy
from enrichment.reporting import words
from tests.factories import make_tenant

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
STEP = timedelta(minutes=5)
POLICY = AlertPolicy(for_evaluations=3, repeat_interval_s=4 * 3600, min_sample=50)
RULES = rules_for({})


@dataclass
class Snap:
    """The fields the rules read, healthy by default."""

    tenant: str = "demo-3pl"
    tenant_id: int = 1
    completeness_pct: float | None = 99.0
    quality_score: float | None = 95.0
    backlog_records: int = 10
    failure_rate_pct: float | None = 1.0
    escalated_records: int = 0
    dead_events: int = 0
    stopped_events: int = 0
    oldest_review_age_s: float | None = None
    oldest_due_age_s: float | None = None
    spend_today_usd: float = 0.0
    signin_refusals: int = 0
    auto_reviews: int = 0
    auto_error_pct: float | None = None
    auto_error_low_pct: float | None = None
    total_records: int = 1000
    window_attempts: int = 500


def run(snaps, *, states=None, silences=frozenset(), policy=POLICY, rules=RULES, start=T0):
    """Evaluate + plan each snapshot in turn, delivering every notification at once."""
    states, sent = dict(states or {}), []
    for i, snap in enumerate(snaps):
        now = start + i * STEP
        states = evaluate(states, snap, rules, policy, now=now)
        states, notes = plan(snap.tenant, states, rules, policy, silences=set(silences), now=now)
        for n in notes:
            key = (n.metric, n.severity)
            states[key] = alerts.after_delivery(states[key], n.kind, now=now)
        sent.append(notes)
    return states, sent


def kinds(notes):
    return [(n.kind, n.metric, n.severity) for n in notes]


def test_condition_must_hold_for_n_evaluations_before_firing():
    bad = Snap(backlog_records=1500)
    states, sent = run([bad, bad, bad])
    assert [kinds(n) for n in sent] == [[], [], [("firing", "backlog", "critical")]]
    assert states[("backlog", "critical")].state == "firing"
    assert states[("backlog", "critical")].active_since == T0


def test_pending_resets_when_the_condition_breaks_before_n():
    bad, good = Snap(backlog_records=1500), Snap()
    states, sent = run([bad, bad, good, bad, bad])
    assert all(n == [] for n in sent)
    assert states[("backlog", "critical")].state == "pending"
    assert states[("backlog", "critical")].consecutive == 2


def test_hysteresis_keeps_firing_inside_the_deadband_then_resolves_once():
    low = Snap(completeness_pct=65.0)
    deadband = Snap(completeness_pct=72.0)  # above 70 (fire) but below 75 (resolve)
    recovered = Snap(completeness_pct=99.0)
    states, sent = run([low, low, low, deadband, deadband, recovered, recovered])
    assert ("firing", "completeness", "critical") in kinds(sent[2])
    assert sent[3] == [] and sent[4] == []
    # The warning was inhibited all along, never notified: its resolve goes out quietly.
    assert kinds(sent[5]) == [("resolved", "completeness", "critical")]
    assert sent[6] == []
    assert states[("completeness", "critical")].state == "inactive"
    assert states[("completeness", "warning")].state == "inactive"


def test_firing_alert_is_resent_only_after_the_repeat_interval():
    bad = Snap(failure_rate_pct=50.0)
    policy = replace(POLICY, for_evaluations=1, repeat_interval_s=3 * STEP.total_seconds())
    _, sent = run([bad] * 7, policy=policy)
    fired = [i for i, notes in enumerate(sent) if notes]
    assert fired == [0, 3, 6]


def test_critical_inhibits_warning_of_the_same_metric_until_it_clears():
    critical = Snap(quality_score=50.0)  # below 60 and below 80
    warning_only = Snap(quality_score=70.0)  # above 65 (critical resolves), below 80
    policy = replace(POLICY, for_evaluations=1)
    states, sent = run([critical, critical, warning_only], policy=policy)
    assert kinds(sent[0]) == [("firing", "quality", "critical")]
    assert states[("quality", "warning")].state == "firing"
    assert kinds(sent[2]) == [
        ("resolved", "quality", "critical"),
        ("firing", "quality", "warning"),
    ]


def test_critical_does_not_inhibit_another_metric():
    snap = Snap(quality_score=70.0, backlog_records=5000)
    _, sent = run([snap], policy=replace(POLICY, for_evaluations=1))
    assert set(kinds(sent[0])) == {
        ("firing", "quality", "warning"),
        ("firing", "backlog", "critical"),
    }


def test_tiny_tenant_below_min_sample_never_alerts_on_rates():
    tiny = Snap(completeness_pct=0.0, quality_score=0.0, total_records=3, window_attempts=3)
    tiny.failure_rate_pct = 100.0
    states, sent = run([tiny] * 5)
    assert all(n == [] for n in sent)
    assert all(s.state == "inactive" for s in states.values())


def test_escalations_alert_at_once_whatever_the_sample():
    snap = Snap(escalated_records=1, total_records=2, window_attempts=0)
    _, sent = run([snap])
    assert kinds(sent[0]) == [("firing", "escalated", "warning")]


def test_a_review_item_older_than_a_day_warns_at_once_and_clears_under_20_hours():
    ages = [86_400.0, 90_000.0, 80_000.0, 73_000.0, 71_000.0, None]
    snaps = [Snap(oldest_review_age_s=age, total_records=3) for age in ages]
    states, sent = run(snaps)
    assert [kinds(n) for n in sent] == [
        [],  # exactly 24 h is not over it
        [("firing", "review_age", "warning")],  # at once, whatever the sample
        [],  # inside the deadband: still firing, already notified
        [],
        [("resolved", "review_age", "warning")],
        [],  # an empty queue has no age: no breach
    ]
    assert states[("review_age", "warning")].state == "inactive"
    assert "review queue" in alerts.RUNBOOK["review_age"]


def test_a_due_record_waiting_over_15_min_warns_at_once_and_clears_under_10():
    ages = [900.0, 901.0, 700.0, 599.0, None, 1000.0]
    snaps = [Snap(oldest_due_age_s=age, total_records=3) for age in ages]
    _, sent = run(snaps)
    assert [kinds(n) for n in sent] == [
        [],  # exactly 15 min is not over it
        [("firing", "starvation", "warning")],  # at once, whatever the sample
        [],  # inside the deadband
        [("resolved", "starvation", "warning")],
        [],  # nothing due: no age, no breach
        [("firing", "starvation", "warning")],
    ]
    rule = next(r for r in RULES if r.name == "starvation_warning")
    assert words.threshold(rule) == "wait of the oldest record due for enrichment over 15 min"
    assert words.metric_value(rule, 1000.0) == "16.7 min"
    assert "max_in_flight" in alerts.RUNBOOK["starvation"]


def test_a_burst_of_wrong_reviewer_keys_warns_at_once_and_clears_at_two_or_fewer():
    counts = [9, 10, 3, 2, 12]
    _, sent = run([Snap(signin_refusals=n, total_records=3) for n in counts])
    assert [kinds(n) for n in sent] == [
        [],
        [("firing", "signin_refusals", "warning")],  # at once, whatever the sample
        [],  # inside the deadband
        [("resolved", "signin_refusals", "warning")],
        [("firing", "signin_refusals", "warning")],
    ]
    rule = next(r for r in RULES if r.metric == "signin_refusals")
    assert words.threshold(rule) == "wrong reviewer keys in 5 min at or over 10 refusals"
    assert "enrichment audit {tenant}" in alerts.RUNBOOK["signin_refusals"]


def test_the_budget_rule_exists_only_for_a_tenant_with_a_budget():
    assert not any(r.metric == "budget" for r in RULES)
    for bad in ({"daily_budget_usd": "x"}, {"daily_budget_usd": 0}, {"daily_budget_usd": None}):
        assert not any(r.metric == "budget" for r in rules_for(bad))
    (rule,) = [r for r in rules_for({"daily_budget_usd": "25"}) if r.metric == "budget"]
    assert (rule.threshold, rule.resolve) == (25.0, 25.0)
    assert words.threshold(rule) == "AI spend today at or over $25.00"
    assert words.metric_value(rule, 3.456) == "$3.46"


def test_spend_reaching_the_budget_warns_at_once_and_clears_when_the_day_turns():
    rules = rules_for({"daily_budget_usd": 10})
    spends = [9.99, 10.0, 12.0, 0.0]
    _, sent = run([Snap(spend_today_usd=v) for v in spends], rules=rules)
    assert [kinds(n) for n in sent] == [
        [],
        [("firing", "budget", "warning")],  # reached: the claim skips the tenant now
        [],
        [("resolved", "budget", "warning")],  # 00:00 UTC: a new day's spend
    ]
    # Without a budget the rule is gone: nothing fires, however much is spent.
    _, sent = run([Snap(spend_today_usd=1e6)] * 3)
    assert all(n == [] for n in sent)


def test_a_firing_budget_alert_resolves_when_the_budget_is_removed():
    rules = rules_for({"daily_budget_usd": 10})
    states, _ = run([Snap(spend_today_usd=11.0)], rules=rules)
    assert states[("budget", "warning")].state == "firing"
    states, sent = run([Snap(spend_today_usd=11.0)], states=states, start=T0 + STEP)
    assert kinds(sent[0]) == [("resolved", "budget", "warning")]
    assert states[("budget", "warning")].state == "inactive"


def test_silence_mutes_notifications_but_state_moves_and_fires_after():
    bad = Snap(backlog_records=2000)
    policy = replace(POLICY, for_evaluations=1)
    states, sent = run([bad, bad], silences={"backlog"}, policy=policy)
    assert sent == [[], []]
    assert states[("backlog", "critical")].state == "firing"
    _, sent = run([bad], states=states, policy=policy, start=T0 + 2 * STEP)
    assert kinds(sent[0]) == [("firing", "backlog", "critical")]


def test_a_resolve_while_silenced_is_muted_and_the_alert_goes_inactive():
    policy = replace(POLICY, for_evaluations=1)
    states, _ = run([Snap(backlog_records=2000)], policy=policy)
    states, sent = run([Snap()], states=states, silences={None}, policy=policy, start=T0 + STEP)
    # Owed only to the channels holding an open incident (PagerDuty): routing drops it for
    # Slack. Once delivered, the alert is inactive as before.
    assert [(n.kind, n.metric, n.muted) for n in sent[0]] == [("resolved", "backlog", True)]
    assert states[("backlog", "critical")].state == "inactive"


def test_a_resolve_never_notified_stays_quiet_even_when_silenced():
    policy = replace(POLICY, for_evaluations=1)
    states, _ = run([Snap(backlog_records=2000)], silences={None}, policy=policy)
    states, sent = run([Snap()], states=states, silences={None}, policy=policy, start=T0 + STEP)
    assert sent == [[]]
    assert states[("backlog", "critical")].state == "inactive"


def test_tenant_threshold_override_and_scaled_deadband():
    rules = rules_for({"alert_thresholds": {"backlog_critical": 10, "quality_warning": "x"}})
    backlog = next(r for r in rules if r.name == "backlog_critical")
    quality = next(r for r in rules if r.name == "quality_warning")
    assert (backlog.threshold, backlog.resolve) == (10.0, 8.0)
    assert quality.threshold == 80.0  # a non-numeric override is ignored
    _, sent = run(
        [Snap(backlog_records=11)], rules=rules, policy=replace(POLICY, for_evaluations=1)
    )
    assert kinds(sent[0]) == [("firing", "backlog", "critical")]


def test_explicit_resolve_on_the_wrong_side_is_clamped_to_the_threshold():
    rules = rules_for({"alert_thresholds": {"completeness_critical_resolve": 50}})
    rule = next(r for r in rules if r.name == "completeness_critical")
    assert rule.resolve == rule.threshold == 70.0


def test_failed_delivery_is_retried_at_the_next_evaluation():
    bad = Snap(backlog_records=2000)
    policy = replace(POLICY, for_evaluations=1)
    states = evaluate({}, bad, RULES, policy, now=T0)
    states, notes = plan("demo-3pl", states, RULES, policy, silences=set(), now=T0)
    assert len(notes) == 1  # not delivered: state keeps last_notified_at None
    states = evaluate(states, bad, RULES, policy, now=T0 + STEP)
    _, notes = plan("demo-3pl", states, RULES, policy, silences=set(), now=T0 + STEP)
    assert kinds(notes) == [("firing", "backlog", "critical")]


def test_refiring_after_resolve_is_a_new_episode_and_notified():
    policy = replace(POLICY, for_evaluations=1)
    bad, good = Snap(backlog_records=2000), Snap()
    _, sent = run([bad, good, bad], policy=policy)
    assert [kinds(s) for s in sent] == [
        [("firing", "backlog", "critical")],
        [("resolved", "backlog", "critical")],
        [("firing", "backlog", "critical")],
    ]


def test_no_data_is_not_a_breach():
    snap = Snap(completeness_pct=None, quality_score=None, failure_rate_pct=None)
    states = evaluate({}, snap, RULES, replace(POLICY, for_evaluations=1), now=T0)
    assert all(s.state == "inactive" for s in states.values())


def test_resolved_without_any_notice_goes_quietly_inactive():
    st = AlertState("backlog", "critical", state="resolved", last_notified_at=None)
    states, notes = plan("t", {("backlog", "critical"): st}, RULES, POLICY, silences=set(), now=T0)
    assert notes == []
    assert states[("backlog", "critical")].state == "inactive"


# --- state in PostgreSQL --------------------------------------------------------------


def test_state_survives_in_the_database_across_evaluations(factory):
    policy = replace(POLICY, for_evaluations=2)
    with factory.begin() as s:
        tenant = make_tenant(s, "pg-alerts")
        tid = tenant.id
    bad = Snap(tenant="pg-alerts", tenant_id=tid, backlog_records=3000)
    for i in range(2):
        with factory.begin() as s:
            notes = alert_store.evaluate_tenant(s, bad, {}, policy, now=T0 + i * STEP)
    assert kinds(notes) == [("firing", "backlog", "critical")]
    with factory.begin() as s:
        alert_store.record_delivery(s, tid, notes, error=None, final=True, now=T0 + STEP)
    with factory() as s:
        row = s.query(Alert).filter_by(tenant_id=tid, metric="backlog").one()
        assert (row.state, row.consecutive, row.notifications_sent) == ("firing", 2, 1)
        assert row.last_notified_at == T0 + STEP
        assert [a.metric for a in alert_store.firing(s, tid)] == ["backlog"]
    with factory.begin() as s:  # delivered: nothing more until the repeat interval
        assert alert_store.evaluate_tenant(s, bad, {}, policy, now=T0 + 2 * STEP) == []


def test_transient_failure_keeps_the_notice_owed_and_records_the_error(factory):
    policy = replace(POLICY, for_evaluations=1)
    with factory.begin() as s:
        tid = make_tenant(s, "pg-transient").id
    bad = Snap(tenant="pg-transient", tenant_id=tid, backlog_records=3000)
    with factory.begin() as s:
        notes = alert_store.evaluate_tenant(s, bad, {}, policy, now=T0)
        alert_store.record_delivery(s, tid, notes, error="slack 503", final=False, now=T0)
    with factory.begin() as s:
        again = alert_store.evaluate_tenant(s, bad, {}, policy, now=T0 + STEP)
        row = s.query(Alert).filter_by(tenant_id=tid, metric="backlog").one()
        assert row.last_error == "slack 503" and row.notifications_sent == 0
    assert kinds(again) == [("firing", "backlog", "critical")]


def test_database_silence_window_applies_only_while_active(factory):
    policy = replace(POLICY, for_evaluations=1)
    with factory.begin() as s:
        tid = make_tenant(s, "pg-silence").id
        s.add(AlertSilence(tenant_id=tid, metric="backlog", starts_at=T0, ends_at=T0 + STEP))
    bad = Snap(tenant="pg-silence", tenant_id=tid, backlog_records=3000)
    with factory.begin() as s:
        assert alert_store.evaluate_tenant(s, bad, {}, policy, now=T0) == []
    with factory.begin() as s:
        notes = alert_store.evaluate_tenant(s, bad, {}, policy, now=T0 + STEP)
    assert kinds(notes) == [("firing", "backlog", "critical")]
