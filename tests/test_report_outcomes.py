"""Delivery shows up in monitoring: dead events alert, action outcomes reach the report."""

from datetime import timedelta

from sqlalchemy import select

from enrichment.alerting.dispatch import run_alerts
from enrichment.cli import report as report_cli
from enrichment.core.models import OutboxEvent, ResolutionAction, Tenant, utcnow
from enrichment.core.monitor_models import Alert
from enrichment.metrics.monitor import run_monitor
from enrichment.reporting import report_html, reports
from tests.factories import make_record, make_tenant


def seed(factory):
    """One tenant, two records with three actions; one DONE, one FAILED (hostile note)."""
    now = utcnow()
    with factory.begin() as s:
        tenant = make_tenant(s, "acme")
        a, b = make_record(s, tenant), make_record(s, tenant)
        rows = [
            ResolutionAction(tenant_id=tenant.id, record_id=a.id, action="RESHIP_ORDER",
                             status="DONE", note="shipped", reported_at=now - timedelta(hours=1)),
            ResolutionAction(tenant_id=tenant.id, record_id=b.id, action="REFUND_ORDER",
                             status="FAILED", note="\x1b[31mred<script>x</script>",
                             reported_at=now),
            ResolutionAction(tenant_id=tenant.id, record_id=b.id, action="NOTIFY_CUSTOMER",
                             status="DELIVERED"),
        ]  # fmt: skip
        s.add_all(rows)
        s.flush()
        s.add(OutboxEvent(tenant_id=tenant.id, record_id=a.id, type="record.enriched",
                          data={}, status="dead", attempts=8))  # fmt: skip
        s.add(OutboxEvent(tenant_id=tenant.id, record_id=b.id, type="record.enriched",
                          data={}, status="pending"))  # fmt: skip
        return tenant.id, b.external_id


def test_the_report_counts_actions_and_lists_outcomes_latest_first(factory, settings, capsys):
    tenant_id, failed_record = seed(factory)
    with factory() as s:
        tenant = s.get(Tenant, tenant_id)
        rep = reports.report(s, tenant, settings, now=utcnow())
    assert rep.actions.by_status == {"DONE": 1, "FAILED": 1, "DELIVERED": 1}
    assert [(o.status, o.external_id) for o in rep.actions.reported][0] == (
        "FAILED",
        failed_record,
    )
    assert [o.status for o in rep.actions.reported] == ["FAILED", "DONE"]
    assert (rep.metrics.undelivered_events, rep.metrics.dead_events) == (1, 1)

    report_cli.print_report(rep)
    out = capsys.readouterr().out
    assert "automated actions: delivered 1, done 1, failed 1" in out
    assert "\x1b" not in out and "red<script>x</script>" in out
    page = report_html.render(rep)
    assert "&lt;script&gt;" in page and "<script>x" not in page


def test_a_dead_event_fires_the_critical_alert_at_the_first_evaluation(factory, settings):
    seed(factory)
    [snap] = run_monitor(factory, settings)
    assert snap.dead_events == 1 and snap.undelivered_events == 1
    run_alerts(factory, [snap], settings)
    with factory() as s:
        states = {(a.metric, a.severity): a.state for a in s.scalars(select(Alert))}
    assert states[("dead_events", "critical")] == "firing"
