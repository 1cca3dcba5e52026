"""Record tallies (core/tallies.py, metrics/tallied.py, migration 0024) on real PostgreSQL: the
monitor's record counts from the tallies equal the scan's (`passes.record_counts`, what SQLite
keeps) on random histories of inserts, updates and deletes, folded or not, and so do the
backlog route's and the review queue's size; a
change that moves no key (a claim's lease) appends nothing; TRUNCATE, a rebuild and a tenant's
removal keep them right."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select, text, update

from enrichment.core import tallies
from enrichment.core.models import ORDER, RAISED_BY_AI, ExceptionRecord, Tenant, utcnow
from enrichment.core.monitor_models import RecordTally, RecordTallyDelta
from enrichment.history import tenant_removal
from enrichment.metrics import passes, tallied
from enrichment.reporting import backlog
from enrichment.reviews import queue
from tests.factories import make_record, make_tenant

R = ExceptionRecord
# Confidences on and around the buckets' and thresholds' edges, where a float can round.
LEASES = (timedelta(minutes=10), timedelta(minutes=-1))  # live, expired
EDGES = [0.0, 0.09999999999999999, 0.1, 0.29, 0.3, 0.69, 0.7, 0.7000000000000001, 0.85, 1.0]


def both(s, tenant: Tenant, **kw) -> tuple[dict, dict]:
    """(the tallies' counts, the scan's counts) for the same tenant, now and window."""
    args = {"now": utcnow(), "window_s": 3600.0, "stuck_after_s": 86_400.0, "max_retries": 5}
    args.update(kw)
    return tallied.record_counts(s, tenant, **args), passes.record_counts(s, tenant, **args)


def assert_equal(s, tenant: Tenant, **kw) -> None:
    mine, scan = both(s, tenant, **kw)
    assert mine.keys() == scan.keys()
    for k, v in scan.items():
        if k == "time_to_enrich_s" and v is not None:
            assert float(mine[k]) == pytest.approx(float(v)), k
        else:
            assert mine[k] == v, (k, mine[k], v)


def random_fields(rng: random.Random, now) -> dict:
    """A record in any state the fleet can leave one in (and some it should not)."""
    conf = rng.choice([None, rng.random(), rng.choice(EDGES)])
    lease = rng.choice([None, *LEASES])
    enriched = now - timedelta(seconds=rng.uniform(0, 7200)) if rng.random() < 0.5 else None
    return {
        "ai_confidence": conf,
        "ai_label": None if conf is None else "DAMAGED_PARCEL",
        "enriched_at": enriched,
        "escalated_at": now if enriched is None and rng.random() < 0.3 else None,
        "reviewed_at": now if rng.random() < 0.2 else None,
        "decided_by": "human" if rng.random() < 0.2 else None,
        "audit_sample": rng.random() < 0.3,
        "approval_requested_at": now if rng.random() < 0.1 else None,
        "enrichment_retry_count": rng.choice([0, 0, 1, 5, 6]),
        "record_type": ORDER if rng.random() < 0.15 else "exception",
        "source": RAISED_BY_AI if rng.random() < 0.15 else None,
        "attached_at": now if rng.random() < 0.3 else None,
        "ai_analysis": {"summary": "x"} if rng.random() < 0.4 else None,
        "created_at": now - timedelta(seconds=rng.uniform(0, 3 * 86_400)),
        "next_attempt_at": now + timedelta(seconds=rng.uniform(-3600, 3600)),
        "lease_token": None if lease is None else "t",
        "lease_expires_at": None if lease is None else now + lease,
    }


@pytest.mark.parametrize(("seed", "cap"), [(1, 10_000), (2, 10_000), (3, 1), (4, 2)])
def test_the_tallies_count_what_the_scan_counts_through_random_histories(
    factory, monkeypatch, seed, cap
):
    monkeypatch.setattr(tallied, "EDGE_CAP", cap)  # 1, 2: the threshold's hundredth every way
    rng, now = random.Random(seed), utcnow()
    with factory.begin() as s:
        tenants = [make_tenant(s, f"t{seed}-{i}", confidence_threshold=0.7) for i in range(3)]
        records = [
            make_record(s, rng.choice(tenants), **random_fields(rng, now)) for _ in range(60)
        ]
        ids = [r.id for r in records]
    for step in range(6):
        with factory.begin() as s:
            for rid in rng.sample(ids, 15):  # one row at a time, as the stages write
                s.execute(update(R).where(R.id == rid).values(**random_fields(rng, now)))
            victims = rng.sample(ids, 3)
            s.execute(delete(R).where(R.id.in_(victims)))  # the pruner, an erasure
            ids = [i for i in ids if i not in victims]
            s.execute(  # a statement over many rows
                update(R)
                .where(R.tenant_id == tenants[0].id, R.enriched_at.is_(None))
                .values(enrichment_retry_count=R.enrichment_retry_count + 1)
            )
            moved = rng.choice(ids)
            s.execute(update(R).where(R.id == moved).values(tenant_id=rng.choice(tenants).id))
            ids += [make_record(s, rng.choice(tenants), **random_fields(rng, now)).id]
        with factory.begin() as s:
            for t in tenants:
                t.confidence_threshold = rng.choice([*EDGES, rng.random()])
                if step % 2:
                    tallies.fold(s, t.id)  # folded every other step: the sum is the same
                at = now + timedelta(hours=rng.choice([0, 1, 30]))
                assert_equal(s, t, now=at)
                assert backlog.counts(s, t.id, at) == backlog.scanned_counts(s, t.id, at)
                assert queue.size(s, t.id, None) == queue.scanned_size(s, t.id, None)


def test_a_claim_moves_no_key_and_appends_nothing(factory):
    with factory.begin() as s:
        t = make_tenant(s, "quiet")
        rec = make_record(s, t)
        tallies.fold(s, t.id)
    with factory.begin() as s:
        s.execute(
            update(R)
            .where(R.id == rec.id)
            .values(lease_token="x", lease_expires_at=utcnow(), next_attempt_at=utcnow())
        )
        assert s.scalar(select(func.count()).select_from(RecordTallyDelta)) == 0
        s.execute(update(R).where(R.id == rec.id).values(ai_confidence=0.9, ai_label="X"))
        assert s.scalar(select(func.count()).select_from(RecordTallyDelta)) == 2  # -1 and +1
        assert_equal(s, t)


def test_a_fold_empties_the_deltas_and_keeps_the_counts(factory):
    with factory.begin() as s:
        t = make_tenant(s, "folding")
        for conf in (0.2, 0.95, None):
            make_record(s, t, ai_confidence=conf, enriched_at=utcnow() if conf else None)
    with factory.begin() as s:
        before = tallied.record_counts(
            s, t, now=utcnow(), window_s=3600, stuck_after_s=60, max_retries=5
        )
        tallies.fold(s, t.id)
        assert s.scalar(select(func.count()).select_from(RecordTallyDelta)) == 0
        assert s.scalar(select(func.sum(RecordTally.n))) == 3
        after = tallied.record_counts(
            s, t, now=utcnow(), window_s=3600, stuck_after_s=60, max_retries=5
        )
        assert {k: after[k] for k in ("total", "classified", "backlog")} == {
            "total": 3,
            "classified": 2,
            "backlog": 1,
        }
        assert {k: before[k] for k in ("total", "classified", "backlog")} == {
            k: after[k] for k in ("total", "classified", "backlog")
        }


def test_truncate_and_rebuild_keep_the_tallies_right(factory):
    with factory.begin() as s:
        t = make_tenant(s, "rebuilt")
        for conf in (0.1, 0.5, 0.99):
            make_record(s, t, ai_confidence=conf)
        tallies.fold(s, t.id)
        s.execute(text("TRUNCATE exception_records CASCADE"))
        assert s.scalar(select(func.count()).select_from(RecordTally)) == 0
        assert s.scalar(select(func.count()).select_from(RecordTallyDelta)) == 0
        for conf in (0.3, None):
            make_record(s, t, ai_confidence=conf)
        incremental = tallies.tally_rows(s, t.id)
        assert tallies.rebuild(s) == 2
        assert tallies.tally_rows(s, t.id) == incremental
        assert_equal(s, t)


def test_removing_a_tenant_leaves_no_tally_of_it(factory):
    with factory.begin() as s:
        gone, kept = make_tenant(s, "gone"), make_tenant(s, "kept")
        for t in (gone, kept, gone):
            make_record(s, t, ai_confidence=0.8)
        tallies.fold(s, kept.id)
        removed = tenant_removal.remove_tenant(s, gone.id, "gone", archive_dir=None)
        assert removed["exception_records"] == 2
        for model in (RecordTally, RecordTallyDelta):
            assert s.scalar(select(func.count()).where(model.tenant_id == gone.id)) == 0
        assert_equal(s, kept)


@pytest.mark.parametrize("cap", [100, 10, 2])  # the upper side; the lower; both past the cap
def test_a_confidence_many_records_share_is_counted_on_the_smaller_side(factory, monkeypatch, cap):
    monkeypatch.setattr(tallied, "EDGE_CAP", cap)
    with factory.begin() as s:
        t = make_tenant(s, "round", confidence_threshold=0.853)
        for conf, n in ((0.855, 12), (0.851, 3), (0.86, 2), (0.5, 1)):
            for _ in range(n):
                make_record(s, t, ai_confidence=conf, ai_label="X")
        mine, scan = both(s, t)
        assert mine["high_confidence"] == scan["high_confidence"] == 14
