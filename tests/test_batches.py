"""Message Batches end to end: submit, poll and apply through the real SDK against the fake's
Batches API, on PostgreSQL; results that mix succeeded, errored, expired and canceled; an
apply cut short; the custom_id rules and the size limits."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from enrichment import batches
from enrichment.batches import apply, submit
from enrichment.core import breaker_store, db
from enrichment.core.batch_models import APPLIED, GIVEN_UP, IN_PROGRESS, Batch, BatchRecord
from enrichment.core.models import EnrichmentAttempt, ExceptionRecord, OutboxEvent, Tenant, utcnow
from enrichment.core.selection import claim_due
from enrichment.core.states import stage_status
from enrichment.core.tenant_settings import TenantSettings
from enrichment.providers.anthropic import AnthropicProvider
from enrichment.providers.pricing import cost_usd
from enrichment.tooling.processes import wait_for
from tests import fake_api
from tests.conftest import with_settings
from tests.factories import make_record, make_tenant

KEY = fake_api.KEY
A = EnrichmentAttempt
R = ExceptionRecord


fake, batch_settings, provider = fake_api.fake, fake_api.batch_settings, fake_api.provider


def _tenant(factory, n: int, name="acme", **tenant_settings) -> tuple[int, list[int]]:
    with factory.begin() as s:
        tenant = make_tenant(s, name, settings=tenant_settings)
        due = utcnow() - timedelta(minutes=1)
        text = "Parcel arrived crushed and torn, contents damaged."
        # Medium: a day to a person, so a batch may hold them (core/time_to_person.py).
        ids = [
            make_record(s, tenant, next_attempt_at=due, notes=text, severity="medium").id
            for _ in range(n)
        ]
        return tenant.id, ids


def _cycle(factory, provider, settings) -> list[int]:
    """One beat run of the batches task: apply what ended, then submit."""
    apply.poll_and_apply(factory, provider, settings)
    return submit.submit_due(factory, provider, settings)


def _records(factory, ids):
    with factory() as s:
        return {r.id: r for r in s.scalars(select(R).where(R.id.in_(ids)))}


# -- pure rules -------------------------------------------------------------------------


def test_custom_ids_match_the_api_pattern_and_differ_by_stage_and_claim():
    rule = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
    ids = {
        submit.custom_id(rid, stage, token)
        for rid in (1, 2**63 - 1)
        for stage in ("order_analysis", "classification", "automation")
        for token in ("11111111-2222-3333-4444-555555555555", "another-token")
    }
    assert len(ids) == 12 and all(rule.match(i) for i in ids)


def _req(n: int, size: int) -> submit.Request:
    body = {"custom_id": f"r{n}-a-0", "params": {"pad": "x" * size}}
    return submit.Request(n, "order_analysis", "t", utcnow(), body)


def test_chunks_split_at_the_request_count_and_at_the_byte_limit():
    reqs = [_req(i, 100) for i in range(7)]
    assert [len(c) for c in submit.chunks(reqs, 3, 10**9)] == [3, 3, 1]
    per = reqs[0].size
    by_bytes = submit.chunks(reqs, 100, 1024 + 2 * per)
    assert [len(c) for c in by_bytes] == [2, 2, 2, 1]
    assert all(sum(r.size for r in c) <= 2 * per for c in by_bytes)


def test_batch_mode_and_minimum_come_from_tenant_settings():
    modes = ({}, {"batch_mode": "never"}, {"batch_mode": 7})
    assert [TenantSettings.parse(s).batch_mode for s in modes] == ["auto", "never", "auto"]
    assert TenantSettings.parse({"batch_min_records": 20}).batch_min_records == 20
    assert TenantSettings.parse({"batch_min_records": True}).batch_min_records is None
    assert TenantSettings.parse(None).batch_min_records is None


# -- the lifecycle --------------------------------------------------------------------


def test_a_backlog_goes_by_batch_stage_after_stage_at_the_batch_price(
    factory, provider, batch_settings, fake
):
    _, ids = _tenant(factory, 6, batch_mode="always")

    first = submit.submit_due(factory, provider, batch_settings)

    assert len(first) == 1
    with factory() as s:
        batch = s.get(Batch, first[0])
        assert (batch.status, batch.stage, batch.requests) == (IN_PROGRESS, "order_analysis", 6)
        leases = s.scalars(select(R.lease_expires_at).where(R.id.in_(ids))).all()
    assert all(lease > utcnow() + timedelta(hours=24) for lease in leases)
    with factory.begin() as s:  # the chains' sweep leaves records in a batch alone
        assert claim_due(s, batch_settings) == []

    for _ in range(3):  # the fake ends a batch at once: each run applies one, sends the next
        _cycle(factory, provider, batch_settings)

    with factory() as s:
        attempts = s.scalars(select(A).where(A.record_id.in_(ids))).all()
        batches = s.scalars(select(Batch).order_by(Batch.id)).all()
        events = s.scalar(select(func.count()).select_from(OutboxEvent).where(
            OutboxEvent.type == "record.enriched"))  # fmt: skip
    assert [b.stage for b in batches] == ["order_analysis", "classification", "automation"]
    assert all(b.status == APPLIED and b.succeeded == 6 for b in batches)
    assert len(attempts) == 18 and all(a.outcome == "completed" for a in attempts)
    assert {a.batch_id for a in attempts} == {b.id for b in batches}
    for a in attempts:
        full = cost_usd(a.model, input_tokens=a.input_tokens, output_tokens=a.output_tokens,
                        cache_write_tokens=a.cache_write_tokens,
                        cache_read_tokens=a.cache_read_tokens)  # fmt: skip
        assert a.cost_usd == pytest.approx(full / 2, abs=1e-8) and a.cost_usd > 0
    assert events == 6
    records = _records(factory, ids)
    assert all(r.enriched_at and r.ai_label == "DAMAGED_PACKAGE" for r in records.values())
    assert all(r.lease_token is None for r in records.values())


def test_auto_mode_batches_only_a_backlog_above_the_minimum(factory, provider, batch_settings):
    _tenant(factory, 4, name="small", batch_min_records=4)
    big, _ = _tenant(factory, 5, name="big", batch_min_records=4)
    _tenant(factory, 9, name="never", batch_mode="never")

    made = submit.submit_due(factory, provider, batch_settings)

    with factory() as s:
        assert [s.get(Batch, b).tenant_id for b in made] == [big]


def test_the_sweep_leaves_an_always_tenant_to_its_batches(factory, batch_settings, settings):
    _, always = _tenant(factory, 3, name="always", batch_mode="always")
    _, auto = _tenant(factory, 3, name="auto")
    with factory.begin() as s:
        swept = {c.record_id for c in claim_due(s, batch_settings)}
    assert swept == set(auto)
    with factory.begin() as s:  # the local provider has no batches: every tenant is swept
        assert {c.record_id for c in claim_due(s, settings)} == set(always)


def test_an_errored_fleet_fault_defers_and_expired_hands_back_without_a_retry(
    factory, provider, batch_settings, fake
):
    _, ids = _tenant(factory, 4, batch_mode="always")
    fake.script([{"status": 500, "type": "api_error", "message": "boom"}])  # the first request
    submit.submit_due(factory, provider, batch_settings)
    apply.poll_and_apply(factory, provider, batch_settings)
    records = _records(factory, ids)
    failed = [r for r in records.values() if r.ai_analysis is None]
    # The provider's 500 is the fleet's fault, not the record's: deferred, no retry spent.
    assert len(failed) == 1 and failed[0].enrichment_retry_count == 0
    assert stage_status(failed[0].enrichment_state, "order_analysis") == "PENDING"
    with factory() as s:
        assert s.scalar(select(A.fault).where(A.outcome == "deferred")) == "server"

    fake.expire_next_batches(2)  # the deferred one is due again; the next batches expire
    made = submit.submit_due(factory, provider, batch_settings)
    apply.poll_and_apply(factory, provider, batch_settings)

    again = _records(factory, ids)
    assert {r.id: r.enrichment_retry_count for r in again.values()} == {
        r.id: r.enrichment_retry_count for r in records.values()
    }  # no retry burnt
    assert all(r.lease_token is None for r in again.values())
    assert stage_status(again[failed[0].id].enrichment_state, "order_analysis") == "PENDING"
    with factory() as s:
        batches = [s.get(Batch, b) for b in made]
        attempts = s.scalar(select(func.count()).select_from(A))
    assert sorted(b.stage for b in batches) == ["classification", "order_analysis"]
    assert sum(b.expired for b in batches) == 4 and attempts == 4  # expiry writes no attempt


def test_an_apply_cut_short_applies_no_result_twice_and_loses_none(
    factory, provider, batch_settings, monkeypatch
):
    _, ids = _tenant(factory, 5, batch_mode="always")
    submit.submit_due(factory, provider, batch_settings)
    real, seen = provider.answer, []

    def dies_on_the_third(*args, **kwargs):
        seen.append(1)
        if len(seen) == 3:
            raise SystemExit("worker killed")  # escapes every handler, as a kill would
        return real(*args, **kwargs)

    monkeypatch.setattr(provider, "answer", dies_on_the_third)
    with pytest.raises(SystemExit):
        apply.poll_and_apply(factory, provider, batch_settings)
    with factory() as s:
        assert s.scalar(select(func.count()).where(BatchRecord.applied_at.is_not(None))) == 2
    monkeypatch.setattr(provider, "answer", real)
    apply.poll_and_apply(factory, provider, batch_settings)

    with factory() as s:
        per_record = dict(s.execute(select(A.record_id, func.count()).group_by(A.record_id)).all())
    assert per_record == {rid: 1 for rid in ids}
    assert all(r.ai_analysis is not None for r in _records(factory, ids).values())


def test_a_batch_the_api_refuses_is_given_up_and_its_records_handed_back(
    factory, batch_settings, fake
):
    _, ids = _tenant(factory, 3, batch_mode="always")
    wrong_key = AnthropicProvider(with_settings(batch_settings, anthropic_api_key="sk-wrong"))
    try:
        assert submit.submit_due(factory, wrong_key, batch_settings) == []
    finally:
        wrong_key.close()
    with factory() as s:
        batch = s.scalars(select(Batch)).one()
        tenant = s.scalars(select(Tenant)).one()
    assert batch.status == GIVEN_UP and "401" in batch.error and "sk-wrong" not in batch.error
    records = _records(factory, ids)
    assert all(r.lease_token is None and r.enrichment_retry_count == 0 for r in records.values())
    assert all(stage_status(r.enrichment_state, "order_analysis") == "PENDING"
               for r in records.values())  # fmt: skip
    assert tenant.name == "acme"
    # And the refused key opened the provider's breaker: no more submits until it closes.
    assert not breaker_store.is_closed(db.get_engine(batch_settings.database_url), batch_settings)


def test_one_batches_run_at_a_time_and_a_dead_holder_frees_the_lock(factory, pg_url):
    engine, key = db.get_engine(pg_url), batches.LOCK_KEY
    with db.exclusive(engine, key) as first, db.exclusive(engine, key) as second:
        assert (first, second) == (True, False)
    with db.exclusive(engine, batches.LOCK_KEY) as again:  # released on the way out
        assert again
    holder = engine.connect()  # another process's session, holding the lock
    assert holder.execute(select(func.pg_try_advisory_lock(batches.LOCK_KEY))).scalar()
    with db.exclusive(engine, batches.LOCK_KEY) as blocked:
        assert not blocked
    holder.invalidate()  # its connection dies with it; the server frees the lock

    def free() -> bool:
        with db.exclusive(engine, batches.LOCK_KEY) as mine:
            return mine

    wait_for(free, timeout_s=10, what="the dead holder's lock freed")


def test_a_record_over_the_limits_is_escalated_at_submit_and_never_sent(
    factory, provider, batch_settings, fake
):
    tenant_id, ids = _tenant(factory, 2, batch_mode="always")
    with factory.begin() as s:
        poison = make_record(
            s, s.get(Tenant, tenant_id), payload={"k" * 100_000: "x"},
            next_attempt_at=utcnow() - timedelta(minutes=1), severity="medium",
        ).id  # fmt: skip

    made = submit.submit_due(factory, provider, batch_settings)

    with factory() as s:
        batch = s.get(Batch, made[0])
        sent = s.scalars(select(BatchRecord.record_id).where(BatchRecord.batch_id == batch.id))
        attempt = s.scalars(select(A).where(A.record_id == poison)).one()
        bad = s.get(R, poison)
    assert (len(made), batch.requests, set(sent)) == (1, 2, set(ids))
    assert (attempt.outcome, attempt.fault) == ("failed", "too_large")
    assert bad.escalated_at is not None and bad.lease_token is None and bad.ai_label is None
    sent_requests = [r for b in fake.batches.values() for r in b.requests]
    assert len(sent_requests) == 2 and all("k" * 1000 not in str(r) for r in sent_requests)
