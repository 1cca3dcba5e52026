"""`make demo` in a shortened form: the real command, its own processes, the embedded default."""

import re
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from enrichment.core import db, reviewers, tenants
from enrichment.core.models import (
    ORDER,
    RAISED_BY_AI,
    ExceptionRecord,
    OutboxEvent,
    Review,
    Tenant,
    in_review,
)
from enrichment.core.monitor_models import MetricSnapshot
from enrichment.tooling.processes import ROOT, scrubbed_env

pytestmark = pytest.mark.slow


def run_demo(var_dir, records: int) -> str:
    """One `enrichment demo` on the embedded default under `var_dir`; its stdout."""
    env = scrubbed_env(ENRICHMENT_VAR_DIR=str(var_dir))
    env.pop("DATABASE_URL", None)
    env.pop("CELERY_BROKER_URL", None)
    args = ["demo", "--records", str(records), "--timeout-s", "150"]
    done = subprocess.run(
        [sys.executable, "-m", "enrichment.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def printed_key(out: str, kind: str = "API", prefix: str = "enr_") -> str:
    return re.search(rf"^{kind} key for demo-3pl .*\n\s+({prefix}\S+)$", out, re.M).group(1)


SIMULATED = re.compile(
    r"^simulated reviews: (\d+) records of the audit sample .*, with (\d+) record.reviewed and"
    r" (\d+) action.requested events; (\d+) escalated records wait for you on the review page",
    re.M,
)
CALIBRATION = re.compile(r"^calibration against people's labels for demo-3pl: (\d+) reviews?", re.M)


def simulated(out: str) -> tuple[int, int]:
    """(records reviewed, escalated records left), after checking one event per review."""
    reviewed, reviewed_events, _actions, left = map(int, SIMULATED.search(out).groups())
    assert reviewed == reviewed_events
    return reviewed, left


def calibrated(out: str) -> int:
    """The reviews the printed calibration rests on, after checking the table and advice."""
    n = int(CALIBRATION.search(out).group(1))
    assert re.search(rf"^  all\s+{n}\s+[01]\.\d{{3}}\s+[01]\.\d{{3}}$", out, re.M)
    assert re.search(r"^  confidence bin\s+reviews\s+mean conf\s+accuracy$", out, re.M)
    advice = (
        "threshold advice: not yet: automated decisions wrong at most 5 % (one-sided 95 % upper "
        f"bound) needs at least 59 audit reviews; {n} so far, {59 - n} more needed"
    )
    assert advice in out  # so few records: short of the 59 audit reviews a 5 % bound needs
    return n


FLAGGED = re.compile(r"^  (ord-[0-9a-f]{8}-)(\d)  flagged ([A-Z_]+) (0\.\d\d)  \(.+\);"
                     r" raised ai:\3:\1\2, (classified [A-Z_]+ [01]\.\d\d|escalated to a person)$",
                     re.M)  # fmt: skip
ATTACHED = re.compile(r"^  exc-[0-9a-f]{8}-(\d) \(([A-Z_]+) on ord-[0-9a-f]{8}-\1\): attached to"
                      r" ai:([A-Z_]+):ord-[0-9a-f]{8}-\1, which the fleet raised (.+) before it$",
                      re.M)  # fmt: skip
ORDER_EVENTS = re.compile(r"^events of the raised exceptions \(order.at_risk first\) delivered"
                          r" (\d+)$", re.M)  # fmt: skip


def orders_part(out: str) -> tuple[int, int]:
    """The orders shown flagged before the tenant's exceptions, and two of those exceptions
    attached with their lead time; (the raised exceptions' events delivered, those escalated)."""
    assert "ingested 5 orders for demo-3pl with no exception" in out
    flagged = {int(n): label for _, n, label, *_ in FLAGGED.findall(out)}
    # the late pick, pack and hand-over are flagged; the two healthy orders are not
    assert flagged == {3: "PICK_DELAY", 4: "PACK_DELAY", 5: "MISSING_SCAN"}
    assert re.search(r"^  ord-[0-9a-f]{8}-1  not flagged  \(healthy", out, re.M)
    assert re.search(r"^  ord-[0-9a-f]{8}-2  not flagged  \(healthy", out, re.M)
    attached = ATTACHED.findall(out)
    assert [(int(n), words, label) for n, words, label, _ in attached] == [
        (3, "LATE_PICK", "PICK_DELAY"), (4, "LATE_PACK", "PACK_DELAY")]  # fmt: skip
    assert all(lead != "no data" for *_, lead in attached)
    escalated = sum(fate == "escalated to a person" for *_, fate in FLAGGED.findall(out))
    return int(ORDER_EVENTS.search(out).group(1)), escalated


def test_demo_runs_to_completion_on_the_embedded_default(tmp_path):
    # Given an empty var folder, when the demo runs twice (the second time with a few records)
    first = run_demo(tmp_path, 50)
    assert (tmp_path / "enrichment.db").exists()
    second = run_demo(tmp_path, 5)

    # Then each run finished its own batch, retried the injected faults and stopped its fleet
    assert "all 50 records terminal" in first
    row = re.search(r"^demo-3pl\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", first, re.M)
    completed, escalated, pending, retries = map(int, row.groups())
    assert completed + escalated == 50 and pending == 0
    assert completed > escalated
    assert retries > 0  # the demo's injected faults were retried
    assert "worker and beat stopped" in first
    assert "all 5 records terminal" in second
    # and each run flagged its late orders before the tenant's exceptions, which attached
    (order_events, raised_escalated), (order_events_2, _) = orders_part(first), orders_part(second)
    assert order_events >= 6  # an order.at_risk and a decision per raised exception

    # and every decision reached the local receiver, signed: one event per enriched or
    # escalated record and per action, all delivered, none dead, no bad signature
    delivered = re.search(r"^events delivered (\d+), dead (\d+);.* verified (\d+) distinct"
                          r" events, (\d+) bad signatures$", first, re.M)  # fmt: skip
    sent, dead, verified, bad = map(int, delivered.groups())
    assert sent >= completed + escalated and dead == 0 and bad == 0
    assert verified == sent + order_events  # the receiver got the orders' events too

    # and the summary counts escalations by reason, or says there were none
    if escalated:
        assert f"escalations by reason ({escalated}):" in first
        assert "what this means: " in first
    else:
        assert "escalations by reason: none" in first

    # and then the audit sample was reviewed, simulated with the generator's true label, the
    # escalated records were left for a person, and the calibration printed
    reviewed, left = simulated(first)
    assert left == escalated + raised_escalated and reviewed > 0  # 25 % of ~45 AI-resolved
    compared = calibrated(first)
    assert compared == reviewed  # every audited record had an AI label
    reviewed_2, left_2 = simulated(second)  # left_2: both runs' escalations (one queue)
    assert left_2 >= left
    assert calibrated(second) == reviewed + reviewed_2  # all the tenant's reviews: both runs'

    # and the second run kept the first run's records, and said so
    n_raised = len(FLAGGED.findall(first))  # exceptions too, unlike the orders' watches
    assert f"keeping {50 + n_raised} records from earlier runs" in second
    factory = db.session_factory(f"sqlite:///{tmp_path / 'enrichment.db'}")
    with factory() as s:
        R = ExceptionRecord
        assert s.scalar(select(func.count()).where(R.external_id.like("demo-%"))) == 55
        assert s.scalar(select(func.count()).where(R.record_type == ORDER)) == 10
        raised = R.source == RAISED_BY_AI
        assert s.scalar(select(func.count()).where(raised)) == 6
        assert s.scalar(select(func.count()).where(raised, R.attached_at.is_not(None))) == 4
        assert s.scalar(select(func.count()).select_from(Tenant)) == 1
        assert s.scalar(select(func.count()).select_from(MetricSnapshot)) >= 2
        events = s.execute(select(OutboxEvent.status, func.count()).group_by(OutboxEvent.status))
        # every event, the reviews' too, was delivered while the receiver was up
        sent_2 = int(re.search(r"^events delivered (\d+)", second, re.M).group(1))
        assert dict(events.all()) == {"delivered": sent + sent_2 + order_events + order_events_2}
        # and the last snapshot counts the problems raised and attached, with the lead time
        snap = s.scalars(select(MetricSnapshot).order_by(MetricSnapshot.id.desc())).first()
        assert (snap.problems_raised, snap.problems_attached) == (6, 4)
        assert snap.lead_time_median_s is not None and snap.lead_time_median_s > 0
        _assert_the_audit_sample_was_reviewed(s, reviewed + reviewed_2, left_2)
        tenant = tenants.require(s, "demo-3pl")
        assert tenant.webhook_url is None  # the demo's receiver is gone: so is the webhook
        # and the key printed last works, the one before it no longer does
        assert tenants.key_matches(tenant, printed_key(second))
        assert not tenants.key_matches(tenant, printed_key(first))
        # the demo's reviewer: the key printed last opens the review page, the earlier not
        assert reviewers.by_key(s, tenant.id, printed_key(second, "Reviewer", "rev_")) is not None
        assert reviewers.by_key(s, tenant.id, printed_key(first, "Reviewer", "rev_")) is None
    assert "localhost:8000/api/enrichment/health/demo-3pl" in second
    assert "review page:    http://localhost:8000/review/demo-3pl" in second
    assert "monitor snapshot taken for 1 tenant(s)" in second


def _assert_the_audit_sample_was_reviewed(s, reviewed: int, left: int) -> None:
    """Every audit-sampled record of the tenant's has one simulated review with its true label;
    what is left in the queue is the escalated records, for a person, and the audit-sampled
    exceptions the order analysis raised (no true label to stand in for a person's)."""
    R = ExceptionRecord
    own = R.source.is_(None)
    sampled = R.audit_sample & R.enriched_at.is_not(None)
    assert s.scalar(select(func.count()).where(sampled, own)) == reviewed
    raised_audits = s.scalar(select(func.count()).where(sampled, ~own, in_review()))
    assert s.scalar(select(func.count()).where(in_review())) == left + raised_audits
    rows = s.execute(select(Review.reviewer, Review.label, R.reference_label, Review.kind)
                     .join(R, R.id == Review.record_id)).all()  # fmt: skip
    assert len(rows) == reviewed and {kind for *_, kind in rows} <= {"audit"}
    assert all(who == "demo-simulated" and label == truth for who, label, truth, _ in rows)
