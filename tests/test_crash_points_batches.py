"""A Message Batch submit or apply SIGKILLed between any two commits leaves nothing stuck.

Given a batch submit or apply run for real in a subprocess (tests/crash_runner.py) with one
crash point armed, when the process dies there, then no record is leased past a chain's
lease without a batch that holds it, every record is claimable again within one sweep
interval plus a chain's lease (the clock moved forward), and the records finish by batch,
each stage applied once. The crash hook, and the other operations: test_crash_points.py.

Real PostgreSQL and the fake Anthropic server; nothing mocked.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from enrichment.batches import apply, submit
from enrichment.core.batch_models import GIVEN_UP, SUBMITTING, Batch, BatchRecord
from enrichment.core.due import chain_lease_s
from enrichment.core.models import ExceptionRecord, utcnow
from enrichment.core.selection import claim_due
from enrichment.providers.anthropic import AnthropicProvider
from enrichment.tooling.fake_anthropic import FakeAnthropic
from tests import fake_api, test_crash_points
from tests.conftest import with_settings
from tests.factories import make_record, make_tenant
from tests.test_crash_points import DAMAGED, assert_enriched_once, crash, no_stuck_lease

KEY = fake_api.KEY
R = ExceptionRecord

fake, batch_settings, provider = fake_api.fake, fake_api.batch_settings, fake_api.provider
env = test_crash_points.env  # the fixture: a crashing subprocess's environment


def recovered_by(settings, killed_at: datetime) -> datetime:
    """The issue's bound: one sweep interval plus a chain's lease after the kill."""
    return killed_at + timedelta(seconds=settings.sweep_interval_s + chain_lease_s(settings))


def all_free_at(factory, ids, at: datetime) -> bool:
    """Every record's lease gone or run out at `at` (a sweep or batch may claim it)."""
    with factory() as s:
        leases = s.scalars(select(R.lease_expires_at).where(R.id.in_(ids))).all()
    return all(lease is None or lease < at for lease in leases)


def batch_tenant(factory, n: int) -> list[int]:
    with factory.begin() as s:
        tenant = make_tenant(s, "acme", settings={"batch_mode": "always"})
        due = utcnow() - timedelta(minutes=1)
        # Medium: a day to a person, so a batch may hold them (core/time_to_person.py).
        return [
            make_record(s, tenant, next_attempt_at=due, notes=DAMAGED, severity="medium").id
            for _ in range(n)
        ]


def finish_by_batch(factory, provider, settings, ids, *, now: datetime) -> None:
    """The batches task from `now` on, until every record is enriched, each stage paid once."""
    submit.submit_due(factory, provider, settings, now=now)
    for _ in range(3):  # the fake ends a batch at once: each run applies one, sends the next
        apply.poll_and_apply(factory, provider, settings)
        submit.submit_due(factory, provider, settings)
    assert_enriched_once(factory, ids)


# -- batch submit -----------------------------------------------------------------------

# Before the batch is stored, the records hold the chain's lease from the claim.
BEFORE_STORE = ("batch_submit.after_claim", "batch_submit.after_begin")
# After it, a "submitting" batch holds them; the stale-submit path gives it up.
AFTER_STORE = ("batch_submit.after_store", "batch_submit.after_create")


@pytest.mark.parametrize("point", BEFORE_STORE)
def test_a_submit_killed_before_its_batch_is_stored_leaves_only_a_chain_lease(
    point, factory, provider, batch_settings, env
):
    ids = batch_tenant(factory, 4)

    killed_at = crash(point, "batch_submit", env)

    no_stuck_lease(factory, batch_settings)
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(Batch)) == 0
    assert not all_free_at(factory, ids, killed_at)  # the claim did commit
    later = recovered_by(batch_settings, killed_at)
    assert all_free_at(factory, ids, later)
    finish_by_batch(factory, provider, batch_settings, ids, now=later)


@pytest.mark.parametrize("point", AFTER_STORE)
def test_a_submit_killed_after_its_batch_is_stored_is_given_up_in_time(
    point, factory, provider, batch_settings, env, fake
):
    ids = batch_tenant(factory, 4)

    killed_at = crash(point, "batch_submit", env)

    no_stuck_lease(factory, batch_settings)  # the batch row holds every record
    apply.poll_and_apply(factory, provider, batch_settings)  # not yet: a create may be slow
    with factory() as s:
        batch = s.scalars(select(Batch)).one()
        assert (batch.status, batch.requests) == (SUBMITTING, 4)
    later = recovered_by(batch_settings, killed_at)
    apply.poll_and_apply(factory, provider, batch_settings, now=later)
    with factory() as s:
        assert s.get(Batch, batch.id).status == GIVEN_UP
    assert all_free_at(factory, ids, later)
    # after_create: the remote batch exists, but its results are never applied (no id kept).
    assert len(fake.batches) == (1 if point.endswith("after_create") else 0)
    finish_by_batch(factory, provider, batch_settings, ids, now=later)


def test_a_hand_back_killed_half_way_is_finished_by_the_give_up(
    factory, provider, batch_settings, env
):
    ids = batch_tenant(factory, 3)
    refused = {**env, "ANTHROPIC_API_KEY": "sk-ant-wrong"}  # the create fails: hand back all

    killed_at = crash("batch_handback.between_records", "batch_submit", refused)

    no_stuck_lease(factory, batch_settings)
    with factory() as s:
        handed = s.scalar(select(func.count()).where(BatchRecord.applied_at.is_not(None)))
    assert handed == 1
    later = recovered_by(batch_settings, killed_at)
    apply.poll_and_apply(factory, provider, batch_settings, now=later)
    assert all_free_at(factory, ids, later)
    finish_by_batch(factory, provider, batch_settings, ids, now=later)


def test_a_create_that_returns_after_the_give_up_is_cancelled(factory, batch_settings):
    ids = batch_tenant(factory, 2)
    with factory.begin() as s:  # a claim on the chain's lease, as submit_due makes it
        claims = claim_due(s, with_settings(batch_settings, ai_provider="local"))
    with FakeAnthropic(api_key=KEY, batch_delay_s=600) as slow:  # still running when cancelled
        provider = AnthropicProvider(
            with_settings(batch_settings, anthropic_base_url=slow.base_url)
        )
        create = provider.create_batch

        def create_outlasting_the_give_up(requests):
            later = utcnow() + timedelta(days=1)
            apply.poll_and_apply(factory, provider, batch_settings, now=later)
            return create(requests)

        provider.create_batch = create_outlasting_the_give_up
        made = submit.submit_claims(factory, provider, batch_settings, _tenant_of(factory), claims)
        provider.close()
        remote = list(slow.batches.values())

    assert made == []
    assert len(remote) == 1 and remote[0].cancel_initiated_at is not None
    assert all_free_at(factory, ids, utcnow())


def _tenant_of(factory) -> int:
    with factory() as s:
        return s.scalar(select(R.tenant_id).limit(1))


# -- batch apply ------------------------------------------------------------------------


@pytest.mark.parametrize("point", ["batch_apply.after_ended", "batch_apply.between_results"])
def test_an_apply_killed_part_way_is_finished_by_the_next_run_once(
    point, factory, provider, batch_settings, env
):
    ids = batch_tenant(factory, 3)
    submit.submit_due(factory, provider, batch_settings)

    crash(point, "batch_apply", env)

    no_stuck_lease(factory, batch_settings)  # the unapplied rows hold the rest
    with factory() as s:
        applied = s.scalar(select(func.count()).where(BatchRecord.applied_at.is_not(None)))
    assert applied == (1 if point.endswith("between_results") else 0)
    apply.poll_and_apply(factory, provider, batch_settings)  # the next run, one interval on
    with factory() as s:
        assert s.scalar(select(func.count()).where(BatchRecord.applied_at.is_(None))) == 0
    finish_by_batch(factory, provider, batch_settings, ids, now=utcnow())
