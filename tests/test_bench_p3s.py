"""P3 at scale's data (enrichment/tooling/bench/p3_scale_seed.py) on PostgreSQL: the mix the
benchmark documents (attempts, events and reviews per record, the states), every index valid
after the load (a partitioned table's included), and no row left in a DEFAULT partition."""

from __future__ import annotations

from sqlalchemy import text

from enrichment.core import db
from enrichment.core.models import Tenant, utcnow
from enrichment.metrics import passes, tallied
from enrichment.tooling.bench import p3_scale_seed as seeding
from enrichment.tooling.bench.common import Services

N, TENANTS = 1000, 10


def expected_attempts(n: int) -> int:
    """The documented mix: nf failed, then nok completed attempts, by id % 100."""
    total = 0
    for i in range(1, n + 1):
        b = i % 100
        nf = (
            1
            if 70 <= b <= 79
            else 2
            if 80 <= b <= 83
            else 1 + i % 3
            if 88 <= b <= 94
            else (i % 2 if b >= 95 else 0)
        )
        nok = 3 if b < 84 else 2 if b < 88 else 1 if b < 95 else 0
        total += nf + nok
    return total


def scalar(url: str, statement: str) -> int:
    with db.get_engine(url).connect() as conn:
        return conn.execute(text(statement)).scalar_one()


def test_seed_writes_the_documented_history(pg_url, factory):
    services = Services(db_url=pg_url, broker_url="", out_dir=None)
    seeding.seed(services, N, TENANTS)
    assert scalar(pg_url, "SELECT count(*) FROM exception_records") == N
    assert scalar(pg_url, "SELECT count(DISTINCT tenant_id) FROM exception_records") == TENANTS
    assert scalar(pg_url, "SELECT count(*) FROM enrichment_attempts") == expected_attempts(N)
    # record.enriched for b < 80, action.requested for b < 20, escalated for 80-83, reviewed 80
    assert scalar(pg_url, "SELECT count(*) FROM outbox_events") == N * 105 // 100
    assert scalar(pg_url, "SELECT count(*) FROM reviews") == N * 2 // 100
    # Events carry many transaction ids, all finished (the pull feed shows them).
    assert scalar(pg_url, "SELECT count(DISTINCT tx) FROM outbox_events") > 1
    visible = (
        "SELECT max(tx) < pg_snapshot_xmin(pg_current_snapshot())::text::bigint FROM outbox_events"
    )
    assert scalar(pg_url, visible)
    states = (
        "SELECT count(*) FILTER (WHERE enriched_at IS NOT NULL)"
        " + 1000 * count(*) FILTER (WHERE escalated_at IS NOT NULL) FROM exception_records"
    )
    assert scalar(pg_url, states) == N * 80 // 100 + 1000 * (N * 4 // 100)
    assert scalar(pg_url, "SELECT count(*) FROM pg_index WHERE NOT indisvalid") == 0
    for table in ("enrichment_attempts", "outbox_events"):
        assert scalar(pg_url, f"SELECT count(*) FROM {table}_default") == 0  # noqa: S608
    per = seeding.per_row(seeding.sizes(services))
    assert all(b > 0 for b in per.values())
    # Loaded with the tallies' insert trigger off, then counted once: they count every record,
    # the trigger is on again, and the monitor's counts are the scan's.
    assert scalar(pg_url, "SELECT sum(n) FROM record_tallies") == N
    on = "SELECT tgenabled FROM pg_trigger WHERE tgname = 'record_tallies_insert'"
    assert scalar(pg_url, on) == "O"
    with factory.begin() as s:
        tenant = s.get(Tenant, 1)
        args = {"now": utcnow(), "window_s": 3600.0, "stuck_after_s": 60.0, "max_retries": 5}
        assert tallied.record_counts(s, tenant, **args) == passes.record_counts(s, tenant, **args)
