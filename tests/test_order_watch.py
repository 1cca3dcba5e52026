"""When a watched order is looked at again, from known timelines: pure, no services."""

from datetime import UTC, datetime, timedelta

from enrichment.core import order_watch
from enrichment.core.schemas import OrderAnalysis, OrderProblem
from enrichment.core.taxonomy import Label, reason_label
from enrichment.providers.local import rules

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
GRACE = timedelta(seconds=order_watch.GRACE_S)


def ev(kind: str, hours: float, source: str = "wms") -> dict:
    at = (T0 + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")
    return {"source": source, "type": kind, "at": at, "detail": ""}


PAID_RELEASED = [
    ev("payment_captured", 0, "payment"),
    ev("allocated", 1),
    ev("released_to_pick", 2),
]


def test_a_released_order_is_checked_just_after_its_pick_deadline():
    # Given an order released to pick at 10:00 and not picked, looked at an hour later
    now = T0 + timedelta(hours=3)

    # Then the next look is just after release + 24 h, and nothing is overdue yet
    assert order_watch.next_check_at(PAID_RELEASED, now) == T0 + timedelta(hours=26) + GRACE
    assert order_watch.overdue(PAID_RELEASED, now) == []


def test_past_the_pick_deadline_the_wait_is_overdue_and_the_watch_idles():
    later = T0 + timedelta(hours=27)

    [(deadline, waited_h)] = order_watch.overdue(PAID_RELEASED, later)

    assert (deadline.wait, deadline.label) == ("pick", Label.PICK_DELAY)
    assert round(waited_h, 2) == 25.0
    # No deadline ahead: looked at again after the idle recheck, still watched
    idle = later + timedelta(seconds=order_watch.IDLE_RECHECK_S)
    assert order_watch.next_check_at(PAID_RELEASED, later) == idle


def test_each_milestone_moves_the_deadline_to_the_next_wait():
    picked = [*PAID_RELEASED, ev("picked", 5)]
    packed = [*picked, ev("packed", 6)]
    collected = [*packed, ev("picked_up", 20, "carrier")]
    now = T0 + timedelta(hours=21)

    assert order_watch.next_check_at(picked, T0 + timedelta(hours=5)) == (
        T0 + timedelta(hours=17) + GRACE
    )
    assert order_watch.next_check_at(packed, T0 + timedelta(hours=6)) == (
        T0 + timedelta(hours=42) + GRACE
    )
    # In transit: delivery within 96 h of the first scan
    assert order_watch.next_check_at(collected, now) == T0 + timedelta(hours=116) + GRACE


def test_a_delivered_or_cancelled_order_is_closed():
    delivered = [*PAID_RELEASED, ev("picked", 5), ev("Delivered", 40, "carrier")]
    cancelled = [ev("payment_captured", 0), ev("order-cancelled", 1)]

    assert order_watch.next_check_at(delivered, T0) is None
    assert order_watch.next_check_at(cancelled, T0) is None
    assert order_watch.is_closed(cancelled)


def test_an_order_with_no_milestone_yet_is_looked_at_after_the_idle_recheck():
    assert order_watch.next_check_at([], T0) == T0 + timedelta(seconds=order_watch.IDLE_RECHECK_S)


def test_the_deadlines_are_the_local_providers_slas():
    limits = {w.name: w.limit_h for w in order_watch.WAITS}

    assert limits == {
        "allocate": rules.ALLOCATE_SLA_H,
        "pick": rules.PICK_SLA_H,
        "pack": rules.PACK_SLA_H,
        "hand_over": rules.COLLECT_SLA_H,
        "delivery": rules.TRANSIT_SLA_H,
    }


def test_only_problems_at_or_over_the_threshold_are_raised():
    analysis = OrderAnalysis(
        problems=[
            OrderProblem(label=Label.PICK_DELAY, confidence=0.9, evidence=["pick late"]),
            OrderProblem(label=Label.PAYMENT_FAILED, confidence=0.6, evidence=["pending"]),
        ],
        summary="two",
    )

    decision = order_watch.decide(analysis, PAID_RELEASED, threshold=0.7, now=T0)

    assert [p.label for p in decision.raises] == [Label.PICK_DELAY]
    assert decision.next_check_at == T0 + timedelta(hours=26) + GRACE


def test_a_reason_code_names_its_label_in_the_tenants_words():
    assert reason_label("PICK_DELAY") is Label.PICK_DELAY
    assert reason_label("late-pick") is Label.PICK_DELAY
    assert reason_label(" short pick ") is Label.INVENTORY_SHORTAGE
    assert reason_label("WHATEVER") is None
    assert reason_label(None) is None
