"""The order figures (issue 25) on real PostgreSQL: problems raised and attached, the lead time
from the fleet's raise to the tenant's own exception, in the snapshot, /metrics, the health
route, `enrichment status` and `report`, and the report page."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from enrichment.core import tenants
from enrichment.core.models import RAISED_BY_AI, ExceptionRecord, utcnow
from enrichment.metrics import prom
from enrichment.metrics.monitor import measure, run_monitor
from tests.factories import make_record, make_tenant
from tests.test_orders import RECORDS, check, ev, hours, order, post, post_order, records

LATE = [ev("released_to_pick", hours(-30))]  # past its 24 h pick deadline


@pytest.fixture
def keys(factory):
    with factory.begin() as s:
        _, key_a = tenants.create_tenant(s, "a-3pl")
        _, key_b = tenants.create_tenant(s, "b-3pl")
    return {"a-3pl": key_a, "b-3pl": key_b}


def snapshot(factory, settings, tenant: str = "a-3pl"):
    with factory() as s:
        return measure(s, tenants.require(s, tenant), settings, settings.monitor, now=utcnow())


def raised_ahead(factory, order_id: str, by_hours: float) -> None:
    """The raised exception of `order_id` as if raised `by_hours` earlier (its created_at)."""
    with factory.begin() as s:
        raised = ExceptionRecord.external_id == f"ai:PICK_DELAY:{order_id}"
        rec = s.scalars(select(ExceptionRecord).where(raised)).one()
        rec.created_at -= hours(by_hours)


def tenant_exception(client, keys, order_id: str) -> dict:
    """The tenant's own exception for the order's late pick, in the tenant's words."""
    item = {
        "order": order(order_id, LATE),
        "exception": {"external_id": f"EXC-{order_id}", "reason_code": "LATE_PICK",
                      "severity": "high"},
    }  # fmt: skip
    r = post(client, keys, RECORDS.format("a-3pl"), {"items": [item]})
    assert r.status_code == 200, r.text
    return r.json()["items"][0]


@pytest.fixture
def attached(client, keys, factory, settings):
    """Three late orders raised by the analysis, 1 h, 3 h and 5 h before now; the tenant's own
    exceptions arrive for the first two only."""
    for order_id in ("ORD-1", "ORD-2", "ORD-3"):
        post_order(client, keys, order_id, LATE)
    check(factory, settings)
    assert len(records(factory, source=RAISED_BY_AI)) == 3
    for order_id, by in (("ORD-1", 1), ("ORD-2", 3), ("ORD-3", 5)):
        raised_ahead(factory, order_id, by)
    before = snapshot(factory, settings)
    for order_id in ("ORD-1", "ORD-2"):
        assert tenant_exception(client, keys, order_id)["result"] == "updated"
    return before


def test_the_lead_time_is_how_long_before_the_tenants_exception_the_fleet_raised_it(
    attached, factory, settings
):
    # Given three raised problems, before any tenant exception: no lead time yet
    assert (attached.problems_raised, attached.problems_attached) == (3, 0)
    assert attached.lead_time_median_s is None

    # When the tenant's own exceptions attached to two of them (raised 1 h and 3 h before)
    snap = snapshot(factory, settings)

    # Then two are attached and the median lead time is 2 h (the unattached one is not in it)
    assert (snap.problems_raised, snap.problems_attached) == (3, 2)
    assert snap.lead_time_median_s == pytest.approx(2 * 3600, abs=60)
    assert (snap.orders_watched, snap.orders_analysed) == (3, 3)
    # and another tenant's figures are its own
    other = snapshot(factory, settings, "b-3pl")
    assert (other.problems_raised, other.problems_attached) == (0, 0)
    assert other.lead_time_median_s is None

    # and the stored snapshot keeps them, and Prometheus shows them
    run_monitor(factory, settings, now=utcnow())
    text = prom.exposition(factory).decode()
    assert 'enrichment_problems_attached{tenant="a-3pl"} 2.0' in text
    lead = re.search(r'^enrichment_order_lead_time_median_seconds\{tenant="a-3pl"\} (\S+)$',
                     text, re.M)  # fmt: skip
    assert float(lead.group(1)) == pytest.approx(2 * 3600, abs=60)
    assert 'enrichment_order_lead_time_median_seconds{tenant="b-3pl"}' not in text


def test_status_report_and_health_show_the_order_figures(attached, cli, client, keys):
    # When the operator reads the status and the report
    code, out, _ = cli("status", "a-3pl")
    _, report, _ = cli("report", "a-3pl")

    # Then both show the orders, the problems raised and confirmed, and the lead time
    assert code in (0, 1, 2)
    for text in (out, report):
        assert re.search(r"^  orders watched\s+3 open, 3 analysed$", text, re.M)
        assert re.search(
            r"^  problems raised\s+3 problems, 2 confirmed by your exceptions$", text, re.M
        )
        assert re.search(
            r"^  lead time\s+median 2 h ahead of your exception \(2 attached\)$", text, re.M
        )
    # and a tenant without orders has no order lines
    _, quiet, _ = cli("status", "b-3pl")
    assert "orders watched" not in quiet and "lead time" not in quiet

    # and the health route carries the same figures
    auth = {"Authorization": f"Bearer {keys['a-3pl']}"}
    body = client.get("/api/enrichment/health/a-3pl", headers=auth).json()
    orders = body["orders"]
    assert (orders["problems_raised"], orders["problems_attached"]) == (3, 2)
    assert orders["lead_time_median_s"] == pytest.approx(2 * 3600, abs=60)
    other = client.get("/api/enrichment/health/b-3pl",
                       headers={"Authorization": f"Bearer {keys['b-3pl']}"}).json()  # fmt: skip
    assert other["orders"] is None

    # and the report page has the order cards
    page = client.get("/api/enrichment/report/a-3pl.html", headers=auth).text
    assert "Problems raised" in page and "2 confirmed by your exceptions" in page
    assert "Lead time" in page and "median ahead of your exception, 2 attached" in page


@pytest.mark.parametrize(("leads_h", "median_h"), [((), None), ((4,), 4), ((1, 9, 2), 2),
                                                   ((1, 2, 3, 10), 2.5)])  # fmt: skip
def test_the_median_lead_time_on_both_databases(any_factory, settings, leads_h, median_h):
    # Given raised exceptions attached after these many hours, one raised and never attached,
    # and an exception of the tenant's own (no source): only the attached count
    now = utcnow()
    with any_factory.begin() as s:
        t = make_tenant(s, "a-3pl")
        for lead in leads_h:
            make_record(s, t, source=RAISED_BY_AI, created_at=now - hours(lead + 1),
                        attached_at=now - hours(1))  # fmt: skip
        make_record(s, t, source=RAISED_BY_AI, created_at=now - hours(50))
        make_record(s, t, created_at=now - hours(70), attached_at=now)

    # When the monitor measures
    snap = snapshot(any_factory, settings)

    # Then the median is of the attached ones' lead times, in seconds
    assert (snap.problems_raised, snap.problems_attached) == (len(leads_h) + 1, len(leads_h))
    if median_h is None:
        assert snap.lead_time_median_s is None
    else:
        assert snap.lead_time_median_s == pytest.approx(median_h * 3600, abs=1)
