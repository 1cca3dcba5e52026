"""Time to a person by severity: the pure decisions, what a stage's outcome writes with them
(on PostgreSQL, a scripted provider), which records a Message Batch may hold, and a critical
ambiguous record in a real fleet reaching the review queue within its limit."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from enrichment.batches import submit
from enrichment.core import time_to_person as ttp
from enrichment.core.batch_models import BatchRecord
from enrichment.core.errors import ProviderPaused
from enrichment.core.models import (
    EnrichmentAttempt,
    ExceptionRecord,
    OutboxEvent,
    in_review,
    utcnow,
)
from enrichment.core.pipeline import run_stage
from enrichment.core.schemas import Classification
from enrichment.core.selection import claim_due
from enrichment.core.settings_sections import ReviewConfig
from enrichment.core.taxonomy import Label
from enrichment.core.tenant_settings import TenantSettings, TenantSettingsError
from tests import fake_api
from tests.conftest import REDIS_URL
from tests.factories import make_record, make_tenant
from tests.fleet import fleet_env, start_beat, start_worker, stop_all, wait_for
from tests.scripted import ScriptedProvider, fail

R = ExceptionRecord
DAY = 86_400.0
fake, batch_settings, provider = fake_api.fake, fake_api.batch_settings, fake_api.provider
LOW = Classification(label=Label.OTHER, confidence=0.41, notes="unclear")

# -- pure decisions ---------------------------------------------------------------------


def test_a_limit_is_the_tenants_own_else_the_fleets():
    reviews = ReviewConfig()
    assert ttp.limit_s("critical", {}, reviews) == 900.0
    assert ttp.limit_s("low", {}, reviews) == 2 * DAY
    assert ttp.limit_s("critical", {"critical": 60.0}, reviews) == 60.0
    assert ttp.limit_s("high", {"critical": 60.0}, reviews) == 4 * 3600.0
    assert ttp.limit_s("unheard-of", {}, reviews) == ttp.limit_s("medium", {}, reviews)


def test_a_critical_records_rechecks_fall_evenly_within_its_15_minutes():
    created = utcnow()
    due_by = ttp.deadline(created, 900.0)
    now, times = created, []
    for left in range(5, 0, -1):  # five rechecks, each run the moment it is due
        at = ttp.recheck_at(now, due_by, normal_at=now + timedelta(days=1), rechecks_left=left)
        assert at is not None
        times.append((at - created).total_seconds())
        now = at
    assert times == pytest.approx([150.0, 300.0, 450.0, 600.0, 750.0])
    # The last recheck still leaves 150 s for the record to reach the queue.
    assert (due_by - now).total_seconds() == pytest.approx(150.0)


def test_a_sooner_normal_recheck_is_kept():
    now = utcnow()
    due_by = ttp.deadline(now, 900.0)
    demo = now + timedelta(seconds=1)  # the demo's ENRICHMENT_LOW_CONFIDENCE_RECHECK_S
    assert ttp.recheck_at(now, due_by, normal_at=demo, rechecks_left=5) == demo


def test_no_time_left_for_a_recheck_means_a_person_now():
    now = utcnow()
    normal = now + timedelta(days=1)
    assert (
        ttp.recheck_at(now, now + timedelta(seconds=3), normal_at=normal, rechecks_left=5) is None
    )
    assert (
        ttp.recheck_at(now, now - timedelta(seconds=1), normal_at=normal, rechecks_left=1) is None
    )
    assert ttp.recheck_at(now, now + timedelta(seconds=3), normal_at=normal, rechecks_left=1)


def test_a_retry_past_the_limit_is_too_late():
    now = utcnow()
    assert ttp.too_late(now + timedelta(seconds=901), ttp.deadline(now, 900.0))
    assert not ttp.too_late(now + timedelta(seconds=899), ttp.deadline(now, 900.0))


def test_only_limits_of_a_day_or_more_may_wait_in_a_message_batch():
    reviews = ReviewConfig()
    assert ttp.short_severities({}, reviews) == ["high", "critical"]
    assert ttp.short_severities({"high": DAY, "medium": 3600.0}, reviews) == [
        "medium",
        "critical",
    ]


def test_limits_read_as_people_say_them():
    assert [ttp.words(s) for s in (900.0, 14_400.0, 2 * DAY, 90.0, 5.0)] == [
        "15 min",
        "4 h",
        "2 d",
        "90 s",
        "5 s",
    ]


def test_a_tenants_limits_are_checked_on_write_and_dropped_on_read():
    own = TenantSettings.validate({"time_to_person_s": {"critical": "300", "low": 3600}})
    assert dict(own.time_to_person_s) == {"critical": 300.0, "low": 3600.0}
    with pytest.raises(TenantSettingsError, match="time_to_person_s.urgent"):
        TenantSettings.validate({"time_to_person_s": {"urgent": 60}})
    with pytest.raises(TenantSettingsError, match="time_to_person_s.low' must be a number > 0"):
        TenantSettings.validate({"time_to_person_s": {"low": 0}})
    with pytest.raises(TenantSettingsError, match="must be an object"):
        TenantSettings.validate({"time_to_person_s": 60})
    read = TenantSettings.parse({"time_to_person_s": {"low": -1, "high": 60}})
    assert dict(read.time_to_person_s) == {"high": 60.0}


# -- a stage's outcome on PostgreSQL ----------------------------------------------------


def _record(factory, severity: str, *, age_s: float = 0.0, **limits) -> int:
    """A record of its own tenant (`limits`: its time_to_person_s), ingested `age_s` ago."""
    with factory.begin() as s:
        name = f"t-{uuid.uuid4().hex[:8]}"
        tenant = make_tenant(s, name, settings={"time_to_person_s": limits})
        rec = make_record(s, tenant, severity=severity)
        rec.created_at = utcnow() - timedelta(seconds=age_s)
        return rec.id


def _chain(factory, provider, settings, record_id):
    """A claim and the chain's stages until one does not continue, as a worker runs them."""
    with factory.begin() as s:
        [claim] = claim_due(s, settings)
    for stage in ("order_analysis", "classification", "automation"):
        out = run_stage(
            factory, provider, settings, stage=stage, record_id=record_id,
            lease_token=claim.lease_token,
        )  # fmt: skip
        if out.kind != "continue":
            return out
    return out


def _load(factory, record_id) -> ExceptionRecord:
    with factory() as s:
        return s.get(R, record_id)


def test_a_critical_records_recheck_comes_in_minutes_not_a_day(factory, settings):
    rid = _record(factory, "critical")
    out = _chain(factory, ScriptedProvider(classify=[LOW]), settings, rid)
    rec = _load(factory, rid)
    assert out.kind == "released" and rec.escalated_at is None
    wait = rec.next_attempt_at - rec.created_at  # its 15 min over six gaps
    assert timedelta(seconds=150) <= wait <= timedelta(seconds=155)


def test_a_critical_record_out_of_time_goes_to_a_person_with_its_reason(factory, settings):
    rid = _record(factory, "critical", age_s=897.0)  # 3 s left: no room for a recheck
    out = _chain(factory, ScriptedProvider(classify=[LOW]), settings, rid)
    rec = _load(factory, rid)
    assert out.kind == "escalated" and rec.enrichment_retry_count == 0
    assert rec.escalation_reason == (
        "critical record: confidence stayed below 0.7 and its 15 min to a person ran out"
    )
    with factory() as s:
        event = s.scalars(select(OutboxEvent).where(OutboxEvent.type == "record.escalated")).one()
        assert s.scalar(select(func.count()).select_from(R).where(in_review())) == 1
    assert event.data["reason"] == rec.escalation_reason


def test_a_failure_keeps_its_backoff_until_a_retry_would_pass_the_limit(factory, settings):
    rid = _record(factory, "critical", critical=120)
    provider = ScriptedProvider(analyze=[fail(), fail()])
    assert _chain(factory, provider, settings, rid).kind == "retry"  # 1 min fits 2 min
    rec = _load(factory, rid)
    assert rec.escalated_at is None and rec.enrichment_retry_count == 1
    with factory.begin() as s:  # the minute has passed, as the sweep would see it
        s.execute(update(R).where(R.id == rid).values(
            next_attempt_at=utcnow(), lease_token=None, lease_expires_at=None))  # fmt: skip
    assert _chain(factory, provider, settings, rid).kind == "escalated"  # 5 min would not
    rec = _load(factory, rid)
    assert rec.escalation_reason == (
        "critical record: its 2 min to a person ran out before a retry;"
        " TransientError: AI timed out"
    )


def test_an_outage_past_the_limit_sends_the_record_to_a_person(factory, settings):
    fresh, late = _record(factory, "critical"), _record(factory, "critical", age_s=901.0)
    for rid, kind in ((fresh, "deferred"), (late, "escalated")):
        with factory.begin() as s:  # one record claimable at a time
            s.execute(
                update(R).where(R.id != rid).values(next_attempt_at=utcnow() + timedelta(days=9))
            )
            s.execute(update(R).where(R.id == rid).values(next_attempt_at=utcnow()))
        paused = ScriptedProvider(analyze=[ProviderPaused("overloaded")])
        assert _chain(factory, paused, settings, rid).kind == kind
    assert _load(factory, fresh).escalated_at is None
    assert "15 min to a person ran out" in _load(factory, late).escalation_reason


# -- Message Batches --------------------------------------------------------------------


def test_a_batch_never_holds_a_record_with_less_than_a_day_to_a_person(
    factory, provider, batch_settings, fake
):
    due = utcnow() - timedelta(minutes=1)
    with factory.begin() as s:
        tenant = make_tenant(s, settings={"batch_mode": "always"})
        ids = {sev: make_record(s, tenant, severity=sev, next_attempt_at=due).id
               for sev in ("critical", "high", "medium", "low")}  # fmt: skip
    chained = []

    made = submit.submit_due(
        factory, provider, batch_settings, to_chain=lambda *c: chained.append(c)
    )

    with factory() as s:
        sent = set(s.scalars(select(BatchRecord.record_id).where(BatchRecord.batch_id == made[0])))
        leases = dict(s.execute(select(R.id, R.lease_token).where(R.id.in_(ids.values()))).all())
    assert sent == {ids["medium"], ids["low"]}
    assert {(rid, token) for rid, token, _ in chained} == {
        (ids["critical"], leases[ids["critical"]]),
        (ids["high"], leases[ids["high"]]),
    }
    with factory() as s:  # the chain's own claims: never stamped or sent by the batch
        assert s.scalar(select(func.count()).select_from(EnrichmentAttempt)) == 0


# -- a real fleet -----------------------------------------------------------------------


def _classified(factory, record_id) -> int:
    """The record's classification attempts."""
    A = EnrichmentAttempt
    with factory() as s:
        count = select(func.count()).select_from(A)
        return s.scalar(count.where(A.record_id == record_id, A.stage == "classification"))


@pytest.fixture
def procs():
    started = []
    yield started
    stop_all(started)


def test_a_critical_ambiguous_record_reaches_the_review_queue_within_its_limit(
    pg_url, factory, redis_client, tmp_path, procs
):
    # The default 24 h recheck; three rechecks, so each gap (16 s / 4) leaves a loaded
    # machine time to run the next on schedule.
    env = fleet_env(pg_url, REDIS_URL, tmp_path, ENRICHMENT_MAX_RETRIES="3")
    procs.append(start_worker(env, tmp_path / "w1.log", name="w1"))
    procs.append(start_beat(env, tmp_path / "beat.log", tmp_path / "beat.db"))
    with factory.begin() as s:  # a warm fleet first: the limit is not the workers' start-up
        warm = make_record(s, make_tenant(s, "warm-3pl")).id
    wait_for(lambda: _classified(factory, warm) >= 1, timeout_s=60, what="warm-up")
    limit_s = 16.0
    with factory.begin() as s:
        # Every classification is ambiguous: no confidence reaches a threshold over 1.
        strict = make_tenant(s, "strict-3pl", confidence_threshold=1.01,
                             settings={"time_to_person_s": {"critical": limit_s}})  # fmt: skip
        critical = make_record(s, strict, severity="critical").id
        low = make_record(s, strict, severity="low").id

    wait_for(
        lambda: _load(factory, critical).escalated_at is not None,
        timeout_s=90,
        what="the critical record escalated",
    )
    wait_for(
        lambda: _load(factory, low).enrichment_retry_count == 1,
        timeout_s=30,
        what="the low record's recheck scheduled",
    )

    rec, other = _load(factory, critical), _load(factory, low)
    assert rec.escalated_at <= rec.created_at + timedelta(seconds=limit_s)
    assert rec.enriched_at is None and rec.ai_label is not None
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(R).where(in_review(), R.id == critical))
    assert _classified(factory, critical) >= 2  # rechecked within its limit, not left for a day
    # The low record of the same tenant waits its own limit's recheck: 2 days over four.
    assert other.escalated_at is None
    wait = other.next_attempt_at - other.created_at
    assert timedelta(hours=12) <= wait <= timedelta(hours=12, minutes=1)
