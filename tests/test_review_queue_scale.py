"""The review queue at scale (issue 26): the page is the first `limit` of each severity class
merged, not a sort of the whole queue. It must give exactly what the sort gave - the old
code is kept here as the oracle - and on PostgreSQL each class is an index scan of
`ix_exception_records_review_due` (migration 0023)."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from enrichment.core import review_claims
from enrichment.core.models import ExceptionRecord as R
from enrichment.core.models import in_review, utcnow
from enrichment.core.settings_sections import ReviewConfig
from enrichment.reviews import queue as q
from enrichment.reviews.queue import WAITING_SINCE, Filter
from tests.factories import make_record, make_tenant

SEVERITIES = ["critical", "high", "medium", "low", "urgent", "Medium"]  # two unknown ones
LABELS = ["DAMAGE", "DELAY", None]


def old_queue(session, tenant_id, *, now, limit, reviews, only):
    """The queue as it was before migration 0023: count, oldest, and one sort of it all."""
    scoped = (R.tenant_id == tenant_id, in_review(), *only.where())
    total, oldest = session.execute(
        select(func.count(), func.min(WAITING_SINCE)).where(*scoped)
    ).one()
    due = q._deadline_epoch(session, q._limits_of(session, tenant_id, reviews))
    ids = session.scalars(select(R.id).where(*scoped).order_by(due, R.id).limit(limit)).all()
    age = None if oldest is None else (now - q._aware(oldest)).total_seconds()
    return list(ids), total, age


def old_next_up(session, tenant_id, reviewer, *, now, reviews):
    C = review_claims.ReviewClaim
    taken = select(C.record_id).where(
        C.tenant_id == tenant_id, C.claimed_until > now, C.reviewer != reviewer
    )
    due = q._deadline_epoch(session, q._limits_of(session, tenant_id, reviews))
    return session.scalar(
        select(R.id)
        .where(R.tenant_id == tenant_id, in_review(), R.id.not_in(taken))
        .order_by(due, R.id)
        .limit(1)
    )


def seed(session, rng: random.Random, now):
    """Two tenants' records: every kind, queued or not, severities known and unknown, waiting
    starts in whole minutes (ties) and some to the microsecond; tenant A has limits of its own."""
    a = make_tenant(session, "a-3pl", settings={"review_deadline_s": {"low": 1800, "high": 7200}})
    b = make_tenant(session, "b-3pl")
    for tenant, n in ((a, 160), (b, 30)):
        for _ in range(n):
            since = now - timedelta(minutes=rng.randint(0, 600))
            if rng.random() < 0.3:
                since -= timedelta(microseconds=rng.randint(1, 999_999))
            kind = rng.choice(["escalation", "approval", "audit", "backlog", "reviewed"])
            fields = {"severity": rng.choice(SEVERITIES), "ai_label": rng.choice(LABELS)}
            if kind == "escalation":
                fields["escalated_at"] = since
            elif kind == "approval":
                fields |= {"enriched_at": since - timedelta(minutes=1)}
                fields |= {"approval_requested_at": since}
            elif kind == "audit":
                fields |= {"enriched_at": since, "audit_sample": True}
            elif kind == "reviewed":
                fields |= {"escalated_at": since, "reviewed_at": now}
            make_record(session, tenant, **fields)
    return a.id, b.id


FILTERS = [
    Filter(),
    *(Filter(kind=k) for k in q.KINDS),
    Filter(label="DAMAGE"),
    *(Filter(severity=s) for s in ["critical", "medium", "low", "urgent", "nope"]),
    Filter(kind="escalation", severity="high"),
]


@pytest.mark.parametrize("seed_no", [1, 2])
def test_the_merged_page_is_the_old_sort(any_factory, seed_no):
    now = utcnow()
    with any_factory.begin() as s:
        a, b = seed(s, random.Random(seed_no), now)
    reviews = ReviewConfig(deadline_s_critical=900.0, deadline_s_medium=3600.0)
    with any_factory() as s:
        for tenant_id in (a, b):
            for only in FILTERS:
                for limit in (1, 7, 50, 500):
                    got = q.queue(s, tenant_id, now=now, limit=limit, reviews=reviews, only=only)
                    ids, total, age = old_queue(
                        s, tenant_id, now=now, limit=limit, reviews=reviews, only=only
                    )
                    assert [i.record_id for i in got.items] == ids, (only, limit)
                    assert (got.total, got.oldest_age_s) == (total, age)
        whole = q.queue(s, a, now=now, limit=500, reviews=reviews)  # compared above, whole
        assert len(whole.items) == whole.total > 50
        assert len({i.severity for i in whole.items}) == len(SEVERITIES)
        # next_up: the first, then the first no one else holds.
        first = q.next_up(s, a, "ada", now=now, reviews=reviews)
        assert first == old_next_up(s, a, "ada", now=now, reviews=reviews) is not None
        review_claims.claim(s, a, first, "bob", now=now, claim_s=600)
        s.flush()
        second = q.next_up(s, a, "ada", now=now, reviews=reviews)
        assert second == old_next_up(s, a, "ada", now=now, reviews=reviews) != first


def test_each_class_is_an_index_scan(factory):
    now = utcnow()
    with factory.begin() as s:
        a, _ = seed(s, random.Random(3), now)
    # Vacuumed (all visible) and analysed, as a table at scale is: the count reads no heap.
    engine = factory.kw["bind"].execution_options(isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("VACUUM ANALYZE exception_records"))
    with factory() as s:
        conn = s.connection()
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        conn.execute(text("SET LOCAL enable_bitmapscan = off"))
        conn.execute(text("SET LOCAL enable_sort = off"))  # tiny tables: a sort looks cheaper
        limits = q._limits_of(s, a, None)
        scoped = (R.tenant_id == a, in_review(), *Filter(kind="audit", label="DAMAGE").where())
        page = (
            select(q._deadline_epoch(s, limits), R.id)
            .where(*scoped, q.severity_class == "medium")
            .order_by(WAITING_SINCE, R.id)
            .limit(50)
        )
        compiled = page.compile(conn, compile_kwargs={"literal_binds": True})
        plan = "\n".join(r[0] for r in conn.execute(text(f"EXPLAIN {compiled}")))
        # In waiting order straight from the index: no sort of the class.
        assert "Index Only Scan using ix_exception_records_review_due" in plan, plan
        assert "Sort" not in plan, plan
        count = select(func.count(), func.min(WAITING_SINCE)).where(*scoped)
        compiled = count.compile(conn, compile_kwargs={"literal_binds": True})
        plan = "\n".join(r[0] for r in conn.execute(text(f"EXPLAIN {compiled}")))
        assert "Index Only Scan using ix_exception_records_review_due" in plan, plan
