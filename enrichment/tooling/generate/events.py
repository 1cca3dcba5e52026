"""WMS, carrier and payment event timelines: one builder per label, and the dated events."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from enrichment.core.taxonomy import Label
from enrichment.tooling.generate.orders import _iso


@dataclass(frozen=True)
class Step:
    """One event to be: hours after the previous one. `key` marks the label's signature."""

    source: str
    type: str
    hours: float
    detail: str
    key: bool = False


def _start(rng: random.Random) -> list[Step]:
    gateway = rng.choice(("shopify_payments", "stripe", "paypal"))
    return [
        Step("system", "order_created", 0.0, "Order received from Shopify"),
        Step("payment", "payment_authorized", 0.01, f"{gateway}: authorized"),
        Step("payment", "payment_captured", 0.05, f"{gateway}: captured"),
    ]


def _warehouse(rng: random.Random, *, pick_h: float = 2.0, pack_h: float = 0.8) -> list[Step]:
    dc = rng.choice(("DC-EAST", "DC-WEST", "DC-UK1"))
    return [
        Step("wms", "allocated", 0.3, f"Allocated from {dc}"),
        Step("wms", "released_to_pick", 0.5, f"Wave W{rng.randint(100, 999)}"),
        Step("wms", "picked", pick_h, f"Picker P{rng.randint(10, 99)}"),
        Step("wms", "packed", pack_h, "Packed, 1 carton"),
    ]


def _carrier(rng: random.Random, carrier: str, *, delivered: bool = False) -> list[Step]:
    steps = [
        Step("carrier", "label_created", 0.3, f"{carrier} label 1Z{rng.randint(10**8, 10**9)}"),
        Step("carrier", "picked_up", rng.uniform(2, 8), f"{carrier} collected from dock"),
        Step("carrier", "in_transit", rng.uniform(6, 20), "Arrived at sort hub"),
    ]
    if delivered:
        steps += [
            Step("carrier", "out_for_delivery", rng.uniform(10, 30), "On vehicle for delivery"),
            Step("carrier", "delivered", rng.uniform(2, 8), "Delivered, left at door"),
        ]
    return steps


def _address_invalid(rng: random.Random, carrier: str) -> list[Step]:
    final = rng.choice(
        (
            Step("carrier", "address_validation_failed", 0.1, "Address not found", True),
            Step("carrier", "exception", 20, "Incorrect address - unable to deliver", True),
            Step("wms", "label_failed", 0.1, "Address validation: postal code mismatch", True),
        )
    )
    head = _start(rng) + _warehouse(rng)
    if final.source == "wms":
        return [*head, final]
    return [*head, *_carrier(rng, carrier)[: 1 if final.hours < 1 else 3], final]


def _payment_failed(rng: random.Random, carrier: str) -> list[Step]:
    code = rng.choice(("insufficient_funds", "do_not_honor", "expired_card", "card_declined"))
    kind = rng.choice(("payment_declined", "authorization_failed", "capture_failed"))
    return [
        Step("system", "order_created", 0.0, "Order received from Shopify"),
        Step("payment", kind, 0.02, f"Gateway response: {code}", True),
        Step("wms", "order_on_hold", 0.1, "Hold: payment not captured", True),
    ]


def _inventory_shortage(rng: random.Random, carrier: str) -> list[Step]:
    if rng.random() < 0.5:
        return [
            *_start(rng),
            Step("wms", "allocation_failed", 0.3, "Insufficient stock: need 2, have 0", True),
        ]
    return [
        *_start(rng),
        *_warehouse(rng)[:2],
        Step("wms", "short_pick", 1.5, "Bin A-12-03 empty, 1 of 2 picked", True),
    ]


def _damaged_package(rng: random.Random, carrier: str) -> list[Step]:
    head = _start(rng) + _warehouse(rng)
    roll = rng.random()
    if roll < 0.2:
        return [*head[:-1], Step("wms", "damaged_in_warehouse", 0.5, "Item broken at pack", True)]
    if roll < 0.6:
        damage = Step("carrier", "package_damaged", 12, "Carton crushed at hub", True)
        return [*head, *_carrier(rng, carrier), damage]
    exc = Step("carrier", "exception", 10, "Damaged - contents exposed, returned to hub", True)
    return [*head, *_carrier(rng, carrier), exc]


def _customer_unavailable(rng: random.Random, carrier: str) -> list[Step]:
    detail = rng.choice(("Recipient not home, notice left", "Business closed", "No one to sign"))
    steps = [*_start(rng), *_warehouse(rng), *_carrier(rng, carrier)]
    steps.append(Step("carrier", "out_for_delivery", rng.uniform(10, 30), "On vehicle"))
    steps.append(Step("carrier", "delivery_attempted", 4, detail, True))
    if rng.random() < 0.5:
        steps.append(Step("carrier", "held_at_facility", 20, "Held for customer pickup", True))
    return steps


def _delivery_delay(rng: random.Random, carrier: str) -> list[Step]:
    detail = rng.choice(("Weather delay", "Missed connection at hub", "Delayed: volume"))
    kind = rng.choice(("delayed", "exception"))
    return [
        *_start(rng),
        *_warehouse(rng),
        *_carrier(rng, carrier),
        Step("carrier", kind, rng.uniform(8, 20), detail, True),
        Step("carrier", "in_transit", rng.uniform(10, 30), "Departed hub"),
    ]


def _pick_delay(rng: random.Random, carrier: str) -> list[Step]:
    steps = [*_start(rng), *_warehouse(rng)[:2]]
    steps.append(Step("system", "pick_sla_breached", rng.uniform(26, 60), "Not picked", True))
    return steps


def _pack_delay(rng: random.Random, carrier: str) -> list[Step]:
    steps = [*_start(rng), *_warehouse(rng)[:3]]
    steps.append(Step("system", "pack_sla_breached", rng.uniform(14, 40), "Not packed", True))
    return steps


def _missing_scan(rng: random.Random, carrier: str) -> list[Step]:
    steps = [*_start(rng), *_warehouse(rng), *_carrier(rng, carrier)]
    if rng.random() < 0.3:
        steps = steps[:-2]  # a label was printed, the carrier never scanned it
    if rng.random() < 0.5:
        steps.append(Step("carrier", "tracking_stalled", rng.uniform(80, 140), "No scan", True))
    return steps


def _system_error(rng: random.Random, carrier: str) -> list[Step]:
    kind, detail = rng.choice(
        (
            ("integration_error", "WMS sync failed: HTTP 500"),
            ("webhook_failed", "orders/create webhook timed out after 3 retries"),
            ("label_generation_failed", "Carrier API returned 500 Internal Server Error"),
            ("edi_rejected", "EDI 856 rejected: malformed segment"),
        )
    )
    return [*_start(rng), Step("system", kind, 0.2, detail, True)]


def _other(rng: random.Random, carrier: str) -> list[Step]:
    delivered = rng.random() < 0.5
    return [*_start(rng), *_warehouse(rng), *_carrier(rng, carrier, delivered=delivered)]


TIMELINES = {
    Label.ADDRESS_INVALID: _address_invalid,
    Label.PAYMENT_FAILED: _payment_failed,
    Label.INVENTORY_SHORTAGE: _inventory_shortage,
    Label.DAMAGED_PACKAGE: _damaged_package,
    Label.CUSTOMER_UNAVAILABLE: _customer_unavailable,
    Label.DELIVERY_DELAY: _delivery_delay,
    Label.PICK_DELAY: _pick_delay,
    Label.PACK_DELAY: _pack_delay,
    Label.MISSING_SCAN: _missing_scan,
    Label.SYSTEM_ERROR: _system_error,
    Label.OTHER: _other,
}

# How long after the last event the exception is raised (hours): delays surface late.
RAISE_AFTER_H: dict[Label, tuple[float, float]] = {
    Label.MISSING_SCAN: (80.0, 140.0),
}


def _events(steps: list[Step], start: datetime, raise_after_h: float) -> list[dict[str, Any]]:
    at, out = start, []
    for step in steps:
        at += timedelta(hours=step.hours)
        out.append(
            {"source": step.source, "type": step.type, "at": _iso(at), "detail": step.detail}
        )
    at += timedelta(hours=raise_after_h)
    out.append({"source": "system", "type": "exception_opened", "at": _iso(at), "detail": ""})
    return out
