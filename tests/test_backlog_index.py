"""The covering backlog indexes (migration 0022) on PostgreSQL: the backlog route's counts and
the monitor's due count stay exact, and they and the claim's demand walk are answered from
the index alone (an Index Only Scan: every column they name is in it; an Index Scan would
mean one was missing)."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import func, select, text

from enrichment.core import demand
from enrichment.core.due import due_unclaimed, leased, past_due
from enrichment.core.models import ExceptionRecord as R
from enrichment.core.models import in_backlog, utcnow
from enrichment.metrics.passes import due_counts
from enrichment.reporting.backlog import backlog
from tests.factories import make_record, make_tenant

BOTH = re.compile(r"Index Only Scan using ix_exception_records_(backlog|sched)\b")


def plan(session, statement) -> str:
    """EXPLAIN of a SQLAlchemy statement, heap and bitmap scans off (tiny tables), on fresh
    statistics (a test before may have left them counting rows since truncated)."""
    conn = session.connection()
    conn.execute(text("ANALYZE exception_records"))
    conn.execute(text("SET LOCAL enable_seqscan = off"))
    conn.execute(text("SET LOCAL enable_bitmapscan = off"))
    compiled = statement.compile(conn, compile_kwargs={"literal_binds": True})
    return "\n".join(r[0] for r in conn.execute(text(f"EXPLAIN {compiled}")))


def test_backlog_counts_exact_and_index_only(factory, settings):
    now = utcnow()
    with factory.begin() as s:
        a, b = make_tenant(s, "a-3pl"), make_tenant(s, "b-3pl")
        past, ahead = now - timedelta(minutes=5), now + timedelta(hours=1)
        make_record(s, a, next_attempt_at=past)  # due, never tried
        make_record(s, a, next_attempt_at=past, enrichment_retry_count=2)  # due, retrying
        make_record(
            s, a, next_attempt_at=past, lease_token="t", lease_expires_at=now + timedelta(minutes=9)
        )  # due but leased
        make_record(s, a, next_attempt_at=ahead, enrichment_retry_count=1)  # in backoff
        make_record(s, a, next_attempt_at=past, enriched_at=now)  # not in the backlog
        make_record(s, b, next_attempt_at=past)  # another tenant's
        tenant = s.merge(a)
    with factory() as s:
        got = backlog(s, tenant, now=now, limit=10)
        assert (got.backlog_records, got.due_now, got.retrying, got.leased) == (4, 3, 2, 1)
        due = due_counts(s, tenant.id, now=now, max_retries=settings.max_retries)
        assert due["due"] == 2 and due["oldest_due_at"] == past
    with factory() as s:
        counts = select(  # backlog.scanned_counts' pass (SQLite's; PostgreSQL reads tallies)
            func.count(),
            func.count().filter(past_due(now)),
            func.count().filter(R.enrichment_retry_count > 0),
            func.count().filter(leased(now)),
        ).where(R.tenant_id == tenant.id, in_backlog())
        assert BOTH.search(plan(s, counts))  # both indexes cover the counts now
        due_now = select(func.count(), func.min(R.next_attempt_at)).where(
            R.tenant_id == tenant.id, due_unclaimed(now, settings.max_retries)
        )
        assert BOTH.search(plan(s, due_now))
        walk = demand._demand_pg(settings, now, 500)  # the claim's per-tenant walk
        assert "Index Only Scan using ix_exception_records_sched" in plan(s, walk)
