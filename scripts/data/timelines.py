"""Event timelines for the styled sets, in three strengths of evidence per label.

- `full`: the telling event is there (pick_sla_breached, delivery_attempted, ...);
- `implicit`: no telling event, but the structure shows it: timestamps past an SLA, a long
  silence, a carrier code in a catch-all event's detail, a payment status, an address that
  cannot be right;
- `none`: the feed stops before anything tells; only the note is left.

A timeline that ends with `exception_opened` says when the exception was raised; otherwise
it is raised 0.1-3 h after the last event.

Every style gets the same mix (see `build_styles.VARIANTS`), so a style differs from another
in its words only.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from enrichment.core.taxonomy import Label
from enrichment.tooling.generate.events import Step, _carrier, _start, _warehouse

L = Label
Builder = Callable[[random.Random, str, str], list[Step]]


def _u(rng: random.Random, lo: float, hi: float) -> float:
    return rng.uniform(lo, hi)


def _raised(after_h: float) -> Step:
    """The exception raised `after_h` hours after the last event (no other event between:
    only the clock tells)."""
    return Step("system", "exception_opened", after_h, "")


def _scans(rng: random.Random, count: int, lo: float, hi: float) -> list[Step]:
    hubs = ("Hub Leipzig", "Sort centre Leeds", "Memphis hub", "Gateway CDG", "Depot 14")
    return [Step("carrier", "in_transit", _u(rng, lo, hi), rng.choice(hubs)) for _ in range(count)]


def _ship(rng: random.Random, carrier: str) -> list[Step]:
    return [*_start(rng), *_warehouse(rng), *_carrier(rng, carrier)]


def _address(rng: random.Random, carrier: str, variant: str) -> list[Step]:
    head = [*_start(rng), *_warehouse(rng)]
    if variant == "full":
        final = rng.choice((
            Step("carrier", "address_validation_failed", 0.1, "Address not found", True),
            Step("carrier", "undeliverable_address", 20, "Street unknown to driver", True),
            Step("wms", "address_correction_required", 0.2, "Validation: no match", True),
        ))  # fmt: skip
        return [*head, *_carrier(rng, carrier)[:1], final]
    if variant == "implicit" and rng.random() < 0.4:
        code = rng.choice(("DEX03 INCORRECT ADDRESS", "Status reason A2", "DEX 03"))
        return [*head, *_carrier(rng, carrier), Step("carrier", "exception", 14, code, True)]
    return head  # implicit: the payload's address is what is wrong (see build_styles)


def _payment(rng: random.Random, carrier: str, variant: str) -> list[Step]:
    created = Step("system", "order_created", 0.0, "Order received")
    if variant == "full":
        kind = rng.choice(("payment_declined", "authorization_failed", "capture_failed"))
        code = rng.choice(("do_not_honor", "insufficient_funds", "expired_card", "3ds_failed"))
        return [created, Step("payment", kind, 0.02, f"Gateway: {code}", True),
                Step("wms", "order_on_hold", 0.1, "Hold: not captured", True)]  # fmt: skip
    if variant == "implicit":
        return [created, Step("wms", "order_on_hold", _u(rng, 0.5, 6), "Manual hold", True)]
    return [created, Step("payment", "payment_authorized", 0.01, "authorized")]


def _inventory(rng: random.Random, carrier: str, variant: str) -> list[Step]:
    if variant == "full":
        final = rng.choice((
            Step("wms", "allocation_failed", 0.3, "Need 2, have 0", True),
            Step("wms", "short_pick", 1.5, "Location empty", True),
            Step("wms", "stockout", 0.4, "ATP 0", True),
        ))  # fmt: skip
        return [*_start(rng), *_warehouse(rng)[: 2 if final.type == "short_pick" else 0], final]
    if variant == "implicit":  # paid, never allocated: the raise comes 14-48 h later
        return [*_start(rng), _raised(_u(rng, 14, 48))]
    return _start(rng)


def _damaged(rng: random.Random, carrier: str, variant: str) -> list[Step]:
    if variant == "full":
        final = rng.choice((
            Step("carrier", "package_damaged", 12, "Carton crushed", True),
            Step("carrier", "damaged_in_transit", 9, "Rewrapped at hub", True),
            Step("carrier", "exception", 10, "Damaged - contents exposed", True),
        ))  # fmt: skip
        return [*_ship(rng, carrier), final]
    if variant == "implicit" and rng.random() < 0.5:
        exc = Step("carrier", "exception", 8, "Status reason AK", True)
        return [*_ship(rng, carrier), exc]
    return [*_start(rng), *_warehouse(rng), *_carrier(rng, carrier, delivered=True)]


def _unavailable(rng: random.Random, carrier: str, variant: str) -> list[Step]:
    out = [*_ship(rng, carrier), Step("carrier", "out_for_delivery", _u(rng, 10, 30), "Loaded")]
    if variant == "full":
        out.append(Step("carrier", "delivery_attempted", 4, "Attempted", True))
        if rng.random() < 0.5:
            out.append(Step("carrier", "held_at_facility", 20, "At depot", True))
        return out
    if variant == "implicit":
        code = rng.choice(("DEX08", "DEX 08 - RECIPIENT NOT IN", "Status reason A1"))
        return [*out, Step("carrier", "exception", 4, code, True)]
    return out[:-1]


def _delay(rng: random.Random, carrier: str, variant: str) -> list[Step]:
    if variant == "full":
        kind = rng.choice(("delayed", "delivery_delayed", "missed_connection"))
        return [*_ship(rng, carrier), Step("carrier", kind, _u(rng, 8, 20), "See carrier", True),
                *_scans(rng, 1, 10, 30)]  # fmt: skip
    if variant == "implicit":  # scans keep coming, delivery does not: 4-7 days in transit
        return [*_ship(rng, carrier), *_scans(rng, rng.randint(4, 6), 18, 30)]
    return _ship(rng, carrier)


def _pick(rng: random.Random, carrier: str, variant: str) -> list[Step]:
    head = [*_start(rng), *_warehouse(rng)[:2]]
    if variant == "full":
        return [*head, Step("system", "pick_sla_breached", _u(rng, 26, 60), "SLA", True)]
    if variant == "implicit":  # released, never picked; the raise is past the SLA
        return [*head, _raised(_u(rng, 26, 60))]
    return head[:-1]


def _pack(rng: random.Random, carrier: str, variant: str) -> list[Step]:
    head = [*_start(rng), *_warehouse(rng)[:3]]
    if variant == "full":
        return [*head, Step("system", "pack_sla_breached", _u(rng, 14, 40), "SLA", True)]
    if variant == "implicit":
        return [*head, _raised(_u(rng, 14, 40))]
    return head[:-1]


def _scan(rng: random.Random, carrier: str, variant: str) -> list[Step]:
    ship = _ship(rng, carrier)
    if variant == "full":
        return [*ship, Step("carrier", "tracking_stalled", _u(rng, 80, 140), "No scan", True)]
    if variant == "implicit":
        if rng.random() < 0.5:  # a label, and no collection scan for days
            return [*ship[:-2], _raised(_u(rng, 40, 100))]
        return [*ship, _raised(_u(rng, 80, 140))]
    return ship


def _system(rng: random.Random, carrier: str, variant: str) -> list[Step]:
    if variant == "full":
        kind = rng.choice(("integration_error", "webhook_failed", "label_generation_failed",
                           "edi_rejected", "sync_failed"))  # fmt: skip
        return [*_start(rng), Step("system", kind, 0.2, "See logs", True)]
    if variant == "implicit":
        step = rng.choice((
            Step("system", "alert", 0.3, "Connector timeout after 30s (HTTP 504)", True),
            Step("system", "connector_error", 0.3, "retry 3/3", True),
        ))  # fmt: skip
        return [*_start(rng), step]
    return [Step("system", "order_created", 0.0, "Order received")]


def _other(rng: random.Random, carrier: str, variant: str) -> list[Step]:
    if variant == "none":
        return _start(rng)
    return [*_start(rng), *_warehouse(rng), *_carrier(rng, carrier, delivered=rng.random() < 0.5)]


TIMELINES: dict[Label, Builder] = {
    L.ADDRESS_INVALID: _address,
    L.PAYMENT_FAILED: _payment,
    L.INVENTORY_SHORTAGE: _inventory,
    L.DAMAGED_PACKAGE: _damaged,
    L.CUSTOMER_UNAVAILABLE: _unavailable,
    L.DELIVERY_DELAY: _delay,
    L.PICK_DELAY: _pick,
    L.PACK_DELAY: _pack,
    L.MISSING_SCAN: _scan,
    L.SYSTEM_ERROR: _system,
    L.OTHER: _other,
}
