"""Stage semantics against real PostgreSQL: NULL on failure, backoff, escalation, leases."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from enrichment.core.backoff import delay_bounds_s
from enrichment.core.errors import PermanentError
from enrichment.core.models import EnrichmentAttempt, ExceptionRecord, ResolutionAction, utcnow
from enrichment.core.pipeline import run_stage
from enrichment.core.schemas import Classification, Resolution
from enrichment.core.selection import claim_due
from enrichment.core.taxonomy import Action, Label
from tests.conftest import with_settings
from tests.factories import make_record, make_tenant
from tests.scripted import ScriptedProvider, fail

CHAIN = ("order_analysis", "classification", "automation")


@pytest.fixture
def record_id(factory):
    """A low record: its 2 days to a person outlast the whole backoff (5 h 21 min), so these
    tests see the plain schedule (core/time_to_person.py)."""
    with factory.begin() as s:
        return make_record(s, make_tenant(s), severity="low").id


def claim(factory, settings):
    with factory.begin() as s:
        claims = claim_due(s, settings)
    return claims


def run_chain(factory, provider, settings, record_id, token):
    """What the Celery chain does: stages in order until one does not say continue."""
    kinds = []
    for stage in CHAIN:
        out = run_stage(
            factory, provider, settings, stage=stage, record_id=record_id, lease_token=token
        )
        kinds.append(out.kind)
        if out.kind != "continue":
            return kinds, out
    return kinds, out


def load(factory, record_id) -> ExceptionRecord:
    with factory() as s:
        return s.get(ExceptionRecord, record_id)


def attempts(factory, record_id):
    with factory() as s:
        return s.scalars(
            select(EnrichmentAttempt)
            .where(EnrichmentAttempt.record_id == record_id)
            .order_by(EnrichmentAttempt.id)
        ).all()


def test_a_chain_enriches_the_record_completely(factory, settings, record_id):
    [c] = claim(factory, settings)
    kinds, out = run_chain(factory, ScriptedProvider(), settings, record_id, c.lease_token)
    rec = load(factory, record_id)
    assert kinds == ["continue", "continue", "done"]
    assert (rec.ai_label, rec.ai_confidence) == ("DAMAGED_PACKAGE", 0.92)
    assert {s: rec.enrichment_state[s]["status"] for s in CHAIN} == dict.fromkeys(
        CHAIN, "COMPLETED"
    )
    assert rec.enriched_at is not None and rec.lease_token is None
    assert rec.ai_source["classification"] == {
        "provider": "scripted",
        "model": "script-1",
        "prompt_version": "v-test",
    }
    rows = attempts(factory, record_id)
    assert [(a.stage, a.outcome) for a in rows] == [(s, "completed") for s in CHAIN]
    assert all(a.input_tokens == 10 and a.cost_usd > 0 for a in rows)


def test_classify_failure_leaves_nulls_and_schedules_retry_one(factory, settings, record_id):
    [c] = claim(factory, settings)
    provider = ScriptedProvider(classify=[fail("read timeout")])
    kinds, out = run_chain(factory, provider, settings, record_id, c.lease_token)
    rec = load(factory, record_id)
    assert kinds == ["continue", "retry"]
    assert rec.ai_label is None and rec.ai_confidence is None
    assert rec.enrichment_state["classification"]["status"] == "FAILED"
    assert "read timeout" in rec.enrichment_state["errors"][-1]
    assert rec.enrichment_retry_count == 1
    low, high = delay_bounds_s(1)
    waited = (rec.next_attempt_at - rec.last_enrichment_attempt).total_seconds()
    assert low - 1 <= waited <= high + 1
    # The record is re-enqueued at once with that countdown, under a fresh lease.
    assert low - 1 <= out.countdown_s <= high and out.lease_token not in (None, c.lease_token)
    assert rec.lease_token == out.lease_token
    assert provider.calls["resolve"] == 0
    assert [a.outcome for a in attempts(factory, record_id)] == ["completed", "failed"]


def test_countdowns_follow_all_five_steps_and_long_waits_go_back_to_the_database(
    factory, settings, record_id
):
    settings = with_settings(settings, max_retries=5)
    provider = ScriptedProvider(classify=[fail()] * 5)
    waits = []
    with factory.begin() as s:
        [c] = claim_due(s, settings)
    token = c.lease_token
    for n in range(1, 6):
        _, out = run_chain(factory, provider, settings, record_id, token)
        rec = load(factory, record_id)
        assert rec.enrichment_retry_count == n
        wait = (rec.next_attempt_at - rec.last_enrichment_attempt).total_seconds()
        low, high = delay_bounds_s(n)
        assert low - 1 <= wait <= high + 1, (n, wait)
        waits.append(out.kind)
        # Make it due now and claim again, as the sweep would once the wait has passed.
        with factory.begin() as s:
            r = s.get(ExceptionRecord, record_id)
            r.next_attempt_at = r.next_attempt_at - timedelta(seconds=high + 5)
            r.lease_token = r.lease_expires_at = None
        [c] = claim(factory, settings)
        token = c.lease_token
    # 1m and 5m (+10%) fit the 6-minute horizon; 15m, 1h and 4h are released to the sweep.
    assert waits == ["retry", "retry", "released", "released", "released"]


def test_after_all_retries_the_record_is_escalated_and_no_longer_selected(
    factory, settings, record_id
):
    provider = ScriptedProvider(analyze=[fail(f"boom {i}") for i in range(6)])
    for _ in range(6):
        with factory.begin() as s:
            s.get(ExceptionRecord, record_id).next_attempt_at -= timedelta(days=1)
            s.get(ExceptionRecord, record_id).lease_expires_at = None
        [c] = claim(factory, settings)
        _, out = run_chain(factory, provider, settings, record_id, c.lease_token)
    rec = load(factory, record_id)
    assert out.kind == "escalated"
    assert rec.escalated_at is not None and "boom 5" in rec.escalation_reason
    assert rec.enrichment_retry_count == 5
    assert provider.calls["analyze"] == 6
    with factory.begin() as s:
        s.get(ExceptionRecord, record_id).next_attempt_at -= timedelta(days=1)
    assert claim(factory, settings) == []


def test_permanent_error_escalates_at_once(factory, settings, record_id):
    [c] = claim(factory, settings)
    _, out = run_chain(
        factory,
        ScriptedProvider(analyze=[PermanentError("401 invalid x-api-key")]),
        settings,
        record_id,
        c.lease_token,
    )
    rec = load(factory, record_id)
    assert out.kind == "escalated" and rec.enrichment_retry_count == 0
    assert "401" in rec.escalation_reason


def test_a_message_with_an_old_token_changes_nothing(factory, settings, record_id):
    [c] = claim(factory, settings)
    provider = ScriptedProvider()
    run_chain(factory, provider, settings, record_id, c.lease_token)
    before = load(factory, record_id)
    out = run_stage(
        factory,
        provider,
        settings,
        stage="classification",
        record_id=record_id,
        lease_token=c.lease_token,
    )
    after = load(factory, record_id)
    assert out.kind == "stale"
    assert provider.calls["classify"] == 1
    assert after.updated_at == before.updated_at
    assert len(attempts(factory, record_id)) == 3


def test_a_retry_does_not_rerun_completed_stages_or_repeat_actions(factory, settings, record_id):
    [c] = claim(factory, settings)
    provider = ScriptedProvider(resolve=[fail("529 overloaded")])
    kinds, out = run_chain(factory, provider, settings, record_id, c.lease_token)
    assert kinds == ["continue", "continue", "retry"]
    kinds, _ = run_chain(factory, provider, settings, record_id, out.lease_token)
    assert kinds == ["continue", "continue", "done"]
    assert provider.calls == {"analyze": 1, "classify": 1, "resolve": 2}
    # A duplicate resolve under a manual token cannot record an action twice either.
    with factory.begin() as s:
        s.get(ExceptionRecord, record_id).lease_token = "manual"
        s.get(ExceptionRecord, record_id).enrichment_state = {}
    run_stage(
        factory, provider, settings, stage="automation", record_id=record_id, lease_token="manual"
    )
    with factory() as s:
        actions = s.scalars(
            select(ResolutionAction.action).where(ResolutionAction.record_id == record_id)
        ).all()
    assert sorted(actions) == ["OPEN_CARRIER_CLAIM", "RESHIP_ORDER"]


def test_low_confidence_is_stored_resolve_skipped_and_recheck_scheduled(
    factory, settings, record_id
):
    low = Classification(label=Label.OTHER, confidence=0.41, notes="unclear")
    [c] = claim(factory, settings)
    provider = ScriptedProvider(classify=[low])
    kinds, out = run_chain(factory, provider, settings, record_id, c.lease_token)
    rec = load(factory, record_id)
    assert kinds == ["continue", "released"]
    assert (rec.ai_label, rec.ai_confidence) == ("OTHER", 0.41)
    assert rec.enrichment_state["automation"]["status"] == "SKIPPED"
    assert rec.enriched_at is None and rec.enrichment_retry_count == 1
    # Not the 24 h recheck: a low record's 2 days to a person hold five rechecks 8 h apart.
    wait = rec.next_attempt_at - rec.created_at
    assert timedelta(hours=8) <= wait <= timedelta(hours=8, seconds=5)
    assert provider.calls["resolve"] == 0


def test_low_confidence_recheck_reclassifies_without_reanalysing(factory, settings, record_id):
    settings = with_settings(settings, low_confidence_recheck_s=0.0, backoff_scale=0.0)
    low = Classification(label=Label.OTHER, confidence=0.41, notes="unclear")
    provider = ScriptedProvider(classify=[low])
    [c] = claim(factory, settings)
    run_chain(factory, provider, settings, record_id, c.lease_token)
    [c] = claim(factory, settings)
    kinds, _ = run_chain(factory, provider, settings, record_id, c.lease_token)
    assert kinds == ["continue", "continue", "done"]
    assert provider.calls == {"analyze": 1, "classify": 2, "resolve": 1}
    assert load(factory, record_id).ai_confidence == 0.92


def test_per_tenant_threshold_decides_confidence(factory, settings):
    with factory.begin() as s:
        rid = make_record(s, make_tenant(s, "strict-3pl", confidence_threshold=0.95)).id
    [c] = claim(factory, settings)
    kinds, _ = run_chain(factory, ScriptedProvider(), settings, rid, c.lease_token)
    assert kinds == ["continue", "released"]


def test_disallowed_action_is_a_failure_and_nothing_is_recorded(factory, settings, record_id):
    bad = Resolution(automatable=True, actions=[Action.RETRY_PAYMENT], rationale="refund it")
    [c] = claim(factory, settings)
    kinds, _ = run_chain(
        factory, ScriptedProvider(resolve=[bad]), settings, record_id, c.lease_token
    )
    rec = load(factory, record_id)
    assert kinds[-1] == "retry"
    assert "not allowed" in rec.enrichment_state["automation"]["error"]
    assert rec.ai_resolution is None and rec.enriched_at is None
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(ResolutionAction)) == 0


def test_unexpected_provider_bug_is_recorded_as_a_failure(factory, settings, record_id):
    [c] = claim(factory, settings)
    kinds, _ = run_chain(
        factory, ScriptedProvider(analyze=[KeyError("payload")]), settings, record_id, c.lease_token
    )
    rec = load(factory, record_id)
    assert kinds == ["retry"]
    assert "KeyError" in rec.enrichment_state["order_analysis"]["error"]


def test_a_running_stage_renews_the_lease(factory, settings, record_id):
    short = with_settings(settings, lease_ttl_s=30.0, sweep_horizon_s=0.0)
    [c] = claim(factory, short)
    with factory.begin() as s:  # the claim's lease ran out while the message waited in a queue
        s.get(ExceptionRecord, record_id).lease_expires_at = utcnow() - timedelta(seconds=1)
    run_stage(
        factory,
        ScriptedProvider(),
        short,
        stage="order_analysis",
        record_id=record_id,
        lease_token=c.lease_token,
    )
    left = (load(factory, record_id).lease_expires_at - utcnow()).total_seconds()
    assert 25 <= left <= 30
    assert claim(factory, short) == []


def test_of_two_deliveries_of_one_message_exactly_one_writes(factory, settings, record_id):
    [c] = claim(factory, settings)
    inner: list = []

    class Redelivering(ScriptedProvider):
        """While the first delivery waits on the AI, a second delivery runs the same stage."""

        def analyze(self, ctx):
            if not inner:
                inner.append(None)
                inner[0] = run_stage(
                    factory,
                    self,
                    settings,
                    stage="order_analysis",
                    record_id=record_id,
                    lease_token=c.lease_token,
                )
            return super().analyze(ctx)

    provider = Redelivering()
    first = run_stage(
        factory,
        provider,
        settings,
        stage="order_analysis",
        record_id=record_id,
        lease_token=c.lease_token,
    )
    assert [inner[0].kind, first.kind] == ["continue", "stale"]
    assert provider.calls["analyze"] == 2
    assert [a.outcome for a in attempts(factory, record_id)] == ["completed", "stale"]
    rec = load(factory, record_id)
    assert rec.enrichment_state["order_analysis"]["status"] == "COMPLETED"
    assert rec.lease_token == c.lease_token
