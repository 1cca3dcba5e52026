"""The provider breaker on real PostgreSQL with the fake Anthropic server: what the sweep
claims while it is open, the probe, the ramp, and a fleet fault through real chains in two
worker processes."""

from dataclasses import replace

import pytest
from sqlalchemy import func, select

from enrichment.alerting import provider_page
from enrichment.cli import report as report_cli
from enrichment.core import breaker, breaker_store, db
from enrichment.core.models import EnrichmentAttempt, ExceptionRecord, Tenant, utcnow
from enrichment.core.pipeline import run_stage
from enrichment.core.selection import sweep_for_fleet
from enrichment.core.settings import Settings
from enrichment.core.settings_sections import BreakerConfig
from enrichment.metrics import prom
from enrichment.providers.anthropic import AnthropicProvider
from enrichment.reporting import report_html, reports
from enrichment.tooling.fake_faults import parse_faults
from tests import fake_api, test_pagerduty
from tests.conftest import REDIS_URL, with_settings
from tests.factories import make_record, make_tenant
from tests.fleet import fleet_env, start_beat, start_worker, stop_all, wait_for
from tests.test_pagerduty import ROUTING_KEY, alerting

pd, slack_hook = test_pagerduty.pd, test_pagerduty.slack_hook  # the fixtures, found by name

KEY = fake_api.KEY
R, A = ExceptionRecord, EnrichmentAttempt
DEDUP = "enrichment/fleet/provider_down/anthropic/claude-haiku-5-5"


fake, batch_settings = fake_api.fake, fake_api.batch_settings  # the fixtures, found by name


@pytest.fixture
def ai_settings(batch_settings):
    return with_settings(
        batch_settings,
        ai_rpm=0,
        breaker=BreakerConfig(min_calls=4, probe_initial_s=15, probe_max_s=120),
    )


def seed(factory, n, **kw):
    with factory.begin() as s:
        tenant = make_tenant(s)
        return [make_record(s, tenant, **kw).id for _ in range(n)]


def engine(factory):
    return factory().get_bind()


def state(factory, settings):
    with engine(factory).connect() as conn:
        return breaker_store.load(conn, breaker_store.key_for(settings))


def sweep(factory, settings, now=None):
    with factory.begin() as s:
        return sweep_for_fleet(s, settings, now=now).claims


def stage(factory, settings, record_id, token):
    provider = AnthropicProvider(settings)
    try:
        return run_stage(
            factory, provider, settings, stage="order_analysis", record_id=record_id,
            lease_token=token,
        )  # fmt: skip
    finally:
        provider.close()


def test_a_refused_key_pauses_the_fleet_and_one_probe_resumes_it(factory, ai_settings, fake):
    # Given ten due records and an API key the provider refuses.
    ids = seed(factory, 10)
    fake.faults = parse_faults("401=1")
    first = sweep(factory, ai_settings)
    assert len(first) == 10

    # When the first stage meets the 401: the breaker opens at once.
    outcome = stage(factory, ai_settings, first[0].record_id, first[0].lease_token)
    b = state(factory, ai_settings)
    assert outcome.kind == "deferred" and (b.state, b.cause) == (breaker.OPEN, "auth")

    # Then the other chains already queued give their leases back without calling.
    calls = len(fake.requests)
    outcomes = [stage(factory, ai_settings, c.record_id, c.lease_token).kind for c in first[1:]]
    assert outcomes == ["deferred"] * 9 and len(fake.requests) == calls
    # And the sweep claims nothing until the probe is due, then exactly one record, at once.
    assert sweep(factory, ai_settings) == []
    probe_at = state(factory, ai_settings).probe_at
    (probe,) = sweep(factory, ai_settings, now=probe_at)
    assert probe.countdown_s == 0.0 and sweep(factory, ai_settings, now=probe_at) == []
    assert state(factory, ai_settings).probe_record_id == probe.record_id

    # When the key works again, the probe's stage succeeds and the breaker closes.
    fake.faults = {}
    assert stage(factory, ai_settings, probe.record_id, probe.lease_token).kind == "continue"
    b = state(factory, ai_settings)
    assert b.is_closed and b.closed_at is not None

    # Then no record spent a retry or was escalated, and the claim ramps up from the floor.
    with factory() as s:
        spent = s.scalar(select(func.max(R.enrichment_retry_count)).where(R.id.in_(ids)))
        escalated = s.scalar(select(func.count()).where(R.escalated_at.is_not(None)))
        deferred = s.scalar(select(func.count()).where(A.outcome == "deferred"))
    assert (spent, escalated, deferred) == (0, 0, 10)
    ramped = with_settings(ai_settings, sweep_min_batch=3)
    assert len(sweep(factory, ramped)) == 3


def test_an_overload_opens_only_past_the_ratio_and_a_failed_probe_backs_off(
    factory, ai_settings, fake
):
    ids = seed(factory, 6)
    fake.faults = parse_faults("529=1")
    claims = sweep(factory, ai_settings)

    kinds = [stage(factory, ai_settings, c.record_id, c.lease_token).kind for c in claims[:3]]
    assert kinds == ["deferred"] * 3 and state(factory, ai_settings).is_closed  # 3 < min_calls
    stage(factory, ai_settings, claims[3].record_id, claims[3].lease_token)
    b = state(factory, ai_settings)
    assert (b.state, b.cause, b.probe_interval_s) == (breaker.OPEN, "overload", 15)

    # The probe meets the overload too: open again, twice the interval.
    (probe,) = sweep(factory, ai_settings, now=b.probe_at)
    assert stage(factory, ai_settings, probe.record_id, probe.lease_token).kind == "deferred"
    b = state(factory, ai_settings)
    assert (b.state, b.probe_interval_s, b.probe_record_id) == (breaker.OPEN, 30, None)
    with factory() as s:
        assert s.scalar(select(func.max(R.enrichment_retry_count)).where(R.id.in_(ids))) == 0


def test_a_bad_request_shape_failing_most_records_is_the_fleets(factory, ai_settings, fake):
    seed(factory, 6)
    fake.faults = parse_faults("400=1")
    claims = sweep(factory, ai_settings)

    kinds = [stage(factory, ai_settings, c.record_id, c.lease_token).kind for c in claims]

    # The first 400s are each record's own (escalated); once most calls fail alike the
    # breaker opens on them, and the rest wait instead.
    assert kinds[:4] == ["escalated"] * 4 and kinds[4:] == ["deferred"] * 2
    assert state(factory, ai_settings).cause == "bad_request"


@pytest.mark.slow
def test_a_fleet_fault_through_real_chains_escalates_nothing_then_heals(
    pg_url, factory, redis_client, tmp_path, fake
):
    # Given two workers and beat on one breaker, and a provider that refuses the key.
    ids = seed(factory, 12)
    fake.faults = parse_faults("401=1")
    env = fleet_env(
        pg_url,
        REDIS_URL,
        tmp_path,
        ENRICHMENT_AI_PROVIDER="anthropic",
        ANTHROPIC_API_KEY=KEY,
        ANTHROPIC_BASE_URL=fake.base_url,
        ENRICHMENT_ANTHROPIC_MAX_RETRIES="0",
        ENRICHMENT_AI_RPM="0",
        ENRICHMENT_BREAKER_PROBE_INITIAL_S="1",
        ENRICHMENT_BREAKER_PROBE_MAX_S="2",
    )
    procs = [start_worker(env, tmp_path / f"w{i}.log", name=f"w{i}") for i in (1, 2)]
    procs.append(start_beat(env, tmp_path / "beat.log", tmp_path / "beat.db"))
    try:
        deferred = select(func.count(func.distinct(A.record_id))).where(A.outcome == "deferred")
        wait_for(lambda: count(factory, deferred) == 12, timeout_s=60, what="all deferred")
        # Only the calls in flight when it opened (2 workers x 2) reached the provider.
        at_pause = len(fake.requests)
        assert at_pause <= 4 + 1  # and perhaps one probe
        probes = select(func.count()).where(A.outcome == "deferred", A.fault == "auth")
        wait_for(lambda: count(factory, probes) >= at_pause + 2, timeout_s=30, what="probes")

        # When the key works again, every record is enriched.
        fake.faults = {}
        done = select(func.count()).where(R.id.in_(ids), R.enriched_at.is_not(None))
        wait_for(lambda: count(factory, done) == 12, timeout_s=90, what="all enriched")
    finally:
        stop_all(procs)

    # Then nothing was escalated, no retry was spent, and the breaker is closed again.
    with factory() as s:
        spent = s.scalar(select(func.max(R.enrichment_retry_count)).where(R.id.in_(ids)))
        escalated = s.scalar(select(func.count()).where(R.escalated_at.is_not(None)))
    assert (spent, escalated) == (0, 0)
    assert state(factory, Settings(ai_provider="anthropic", anthropic_api_key=KEY)).is_closed


def count(factory, stmt):
    with factory() as s:
        return s.scalar(stmt)


def test_one_outage_is_one_page_with_its_cause_and_its_resolve(
    factory, ai_settings, fake, pd, slack_hook
):
    # Given PagerDuty and Slack for the fleet, and an outage on a refused key.
    settings = alerting(ai_settings, pd.url)
    paging = replace(settings.routing.pagerduty, routing_key=ROUTING_KEY)
    settings = with_settings(
        settings,
        routing=replace(settings.routing, pagerduty=paging),
        slack=replace(settings.slack, webhook_url=slack_hook.url),
    )
    seed(factory, 5)
    fake.faults = parse_faults("401=1")
    claims = sweep(factory, settings)
    for c in claims:
        stage(factory, settings, c.record_id, c.lease_token)

    # When another beat's run holds the paging lock, then the monitor runs three times during
    # the outage, and once after it healed.
    with db.exclusive(db.get_engine(settings.database_url), provider_page.LOCK_KEY) as held:
        assert held and provider_page.run(factory, settings) == []  # the other run pages
    assert pd.actions() == []
    pages = [provider_page.run(factory, settings) for _ in range(3)]
    fake.faults = {}
    b = state(factory, settings)
    (probe,) = sweep(factory, settings, now=b.probe_at)
    stage(factory, settings, probe.record_id, probe.lease_token)
    healed = provider_page.run(factory, settings)

    # Then one trigger with the cause in plain words, and one resolve on the same key.
    assert [len(p) for p in pages] == [1, 0, 0] and len(healed) == 1
    assert pd.actions() == [("trigger", DEDUP), ("resolve", DEDUP)]
    summary = pd.events[0]["payload"]["summary"]
    assert "API key was refused (401)" in summary and "5 records waiting" in summary
    assert "0 retries spent" in summary
    firing, resolved = (m["text"] for m in slack_hook.received)
    assert "*CRITICAL* provider down" in firing and "rotate ANTHROPIC_API_KEY" in firing
    assert resolved.startswith("[enrichment] *RESOLVED*")


def test_a_paused_provider_shows_on_metrics_health_status_and_the_report(
    factory, ai_settings, capsys
):
    # Given two tenants' due records and a breaker opened by a spend cap.
    ids = seed(factory, 3)
    with factory.begin() as s:
        other = make_tenant(s, "other-3pl")
        make_record(s, other)
    key = breaker_store.key_for(ai_settings)
    breaker_store.record_fault(engine(factory), key, "spend_cap", ai_settings.breaker, utcnow())

    # When the operator looks.
    text = prom.exposition(factory, ai_settings).decode()
    with factory() as s:
        tenant = s.get(Tenant, s.get(R, ids[0]).tenant_id)
        report = reports.report(s, tenant, ai_settings, now=utcnow())
    report_cli.print_health(report.health)
    page = report_html.render(report)

    # Then every view says the provider is paused, why, and what it holds back.
    labels = '{model="claude-haiku-5-5",provider="anthropic"}'
    assert f"enrichment_provider_breaker_state{labels} 2.0" in text
    assert f"enrichment_provider_waiting_records{labels} 4.0" in text  # the whole fleet's
    (line,) = report.health.provider
    assert "paused since" in line and "spend limit" in line and "3 records waiting" in line
    assert report.health.status == "critical" and "provider_down" in report.health.problems
    assert "AI provider anthropic claude-haiku-5-5: paused since" in capsys.readouterr().out
    assert "The AI provider is" in page and "3 records waiting" in page


def test_an_overloaded_model_hands_its_work_to_the_fallback_and_keeps_its_probe(
    factory, ai_settings, fake
):
    # Given a fallback model, and the primary's breaker opened by an overload.
    settings = with_settings(
        ai_settings, breaker=replace(ai_settings.breaker, fallback_model="claude-sonnet-4-6")
    )
    seed(factory, 6)
    fake.faults = parse_faults("529=1")
    claims = sweep(factory, settings)
    for c in claims[:4]:
        stage(factory, settings, c.record_id, c.lease_token)
    assert state(factory, settings).cause == "overload"

    # When a stage comes while the primary is open (and the provider answers again).
    fake.faults = {}
    outcome = stage(factory, settings, claims[4].record_id, claims[4].lease_token)

    # Then the fallback model answered it, one hop, and its source says so.
    with factory() as s:
        rec = s.get(R, claims[4].record_id)
    assert outcome.kind == "continue"
    assert rec.ai_source["order_analysis"]["model"] == "claude-sonnet-4-6"
    assert fake.requests[-1]["body"]["model"] == "claude-sonnet-4-6"
    # And the sweep claims work again (for the fallback), its first record the primary's probe.
    again = sweep(factory, settings, now=state(factory, settings).probe_at)
    assert len(again) == 4 and state(factory, settings).probe_record_id == again[0].record_id


def test_a_refused_key_never_goes_to_the_fallback(factory, ai_settings, fake):
    settings = with_settings(
        ai_settings, breaker=replace(ai_settings.breaker, fallback_model="claude-sonnet-4-6")
    )
    seed(factory, 2)
    fake.faults = parse_faults("401=1")
    first, second = sweep(factory, settings)
    stage(factory, settings, first.record_id, first.lease_token)
    calls = len(fake.requests)

    assert stage(factory, settings, second.record_id, second.lease_token).kind == "deferred"
    assert len(fake.requests) == calls  # the fallback shares the key: no call at all
    assert sweep(factory, settings) == []


def test_the_ratio_counts_the_latest_calls_however_busy_the_minute_was(factory, ai_settings, fake):
    # Given a busy minute: 50 calls that succeeded just before the overload began.
    (record_id,) = seed(factory, 1)
    with factory.begin() as s:
        tenant_id = s.get(R, record_id).tenant_id
        ok = dict(tenant_id=tenant_id, record_id=record_id, stage="order_analysis",
                  latency_s=0.1, provider="anthropic", model="claude-haiku-5-5")  # fmt: skip
        s.add_all([A(outcome="completed", **ok) for _ in range(50)])
    key = breaker_store.key_for(ai_settings)

    def fail(n, **kw):
        with factory.begin() as s:
            s.add_all([A(outcome="deferred", fault="overload", **ok, **kw) for _ in range(n)])
        return breaker_store.record_fault(
            engine(factory), key, "overload", ai_settings.breaker, utcnow()
        )

    # When one interactive call fails, then nine Message Batch results (the provider's past,
    # not counted): 1 of the last 4 calls failed, and it stays closed.
    fail(1)
    assert fail(9, batch_id=1).is_closed
    # Then a second interactive failure makes 2 of the last 4 (min_calls): it opens, after
    # two failures, not after as many as the busy minute's 50 successes.
    assert fail(1).state == breaker.OPEN
