"""Realistic demo backlog: Shopify-like orders with WMS/carrier/payment events and one
exception record each, written as JSONL for `enrichment ingest`.

Deterministic under the seed (one `random.Random(seed)`, a fixed calendar), so a demo,
a test and a benchmark see the same records. About 17% of the records are deliberately
ambiguous (conflicting reason code and notes, vague notes, missing events, two problems
at once): real exception queues are like that, and a classifier must be unsure about them.
Emails and phones are personal data on purpose; they use reserved example domains and
fictional number ranges.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from enrichment.core.taxonomy import Label

# A fixed calendar (peak season), not "now": the same seed must give the same file.
BASE_TIME = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
AMBIGUOUS_SHARE = 0.17

# Relative frequency of each true label in a 3PL's exception queue.
LABEL_WEIGHTS: dict[Label, int] = {
    Label.ADDRESS_INVALID: 12,
    Label.PAYMENT_FAILED: 9,
    Label.INVENTORY_SHORTAGE: 11,
    Label.DAMAGED_PACKAGE: 9,
    Label.CUSTOMER_UNAVAILABLE: 9,
    Label.DELIVERY_DELAY: 12,
    Label.PICK_DELAY: 10,
    Label.PACK_DELAY: 7,
    Label.MISSING_SCAN: 9,
    Label.SYSTEM_ERROR: 6,
    Label.OTHER: 6,
}

# What the source systems put in reason_code: noisy, overlapping, sometimes useless.
REASON_CODES: dict[Label, tuple[str, ...]] = {
    Label.ADDRESS_INVALID: ("ADDR_CHECK", "ADDR_CHECK", "ADDRESS", "addr_check", "UNKNOWN"),
    Label.PAYMENT_FAILED: ("PAYMENT", "PAYMENT", "PAY_HOLD", "payment"),
    Label.INVENTORY_SHORTAGE: ("SHORT_PICK", "OOS", "INV_SHORT", "LATE_PICK"),
    Label.DAMAGED_PACKAGE: ("DAMAGE", "DAMAGE", "DMG", "CARRIER_EXC"),
    Label.CUSTOMER_UNAVAILABLE: ("CARRIER_EXC", "NDR", "DELIVERY_ATTEMPT"),
    Label.DELIVERY_DELAY: ("SLA_BREACH", "CARRIER_EXC", "LATE_DELIVERY", "late_delivery"),
    Label.PICK_DELAY: ("LATE_PICK", "LATE_PICK", "SLA_BREACH", "late-pick"),
    Label.PACK_DELAY: ("LATE_PACK", "SLA_BREACH", "LATE_PICK"),
    Label.MISSING_SCAN: ("NO_SCAN", "CARRIER_EXC", "TRACKING", "SLA_BREACH"),
    Label.SYSTEM_ERROR: ("SYS_ERR", "INTEGRATION", "UNKNOWN"),
    Label.OTHER: ("UNKNOWN", "CS_REQUEST", "MISC"),
}

SEVERITIES: dict[Label, tuple[str, ...]] = {
    Label.ADDRESS_INVALID: ("medium", "medium", "high", "low"),
    Label.PAYMENT_FAILED: ("high", "medium", "critical"),
    Label.INVENTORY_SHORTAGE: ("high", "medium", "critical"),
    Label.DAMAGED_PACKAGE: ("high", "critical", "medium"),
    Label.CUSTOMER_UNAVAILABLE: ("low", "medium"),
    Label.DELIVERY_DELAY: ("medium", "high", "low"),
    Label.PICK_DELAY: ("medium", "high"),
    Label.PACK_DELAY: ("medium", "low", "high"),
    Label.MISSING_SCAN: ("medium", "high"),
    Label.SYSTEM_ERROR: ("critical", "high"),
    Label.OTHER: ("low", "low", "medium"),
}

# Ops notes as people write them. {sku}, {carrier}, {city}, {hours} are filled in.
NOTES: dict[Label, tuple[str, ...]] = {
    Label.ADDRESS_INVALID: (
        "Carrier rejected the address, zip does not match city. Need customer to confirm.",
        "addr invalid - no such street in {city}?",
        "Apartment number missing, driver couldn't find unit",
        "Address verification failed at label creation",
        "undeliverable address per {carrier}, pls reach out to customer",
        "Postcode looks wrong for {city}. Invalid address flagged by validation.",
    ),
    Label.PAYMENT_FAILED: (
        "Payment declined, order on hold until customer updates card",
        "card declined (insufficient funds). holding shipment",
        "Auth failed on capture - do not ship",
        "payment failed twice, gateway says do_not_honor",
        "Capture failed, authorization expired. Order held.",
    ),
    Label.INVENTORY_SHORTAGE: (
        "Short pick on {sku}: bin empty, system shows 3 on hand",
        "Out of stock for {sku}, waiting on PO",
        "inventory shortage - only 1 of 2 units found in location",
        "Stock discrepancy on {sku}, cycle count requested. OOS for now",
        "no stock left for {sku}, backorder?",
    ),
    Label.DAMAGED_PACKAGE: (
        "Customer reports the parcel arrived crushed, item broken",
        "{carrier} reports package damaged in transit",
        "Box damaged at hub, contents exposed",
        "item arrived broken - photos attached to ticket",
        "Damaged during packing, glass cracked. Needs replacement",
        "water damage on parcel per driver",
    ),
    Label.CUSTOMER_UNAVAILABLE: (
        "Delivery attempted, no one home. Notice left",
        "Recipient not available, 2nd attempt failed",
        "customer not home x2, parcel held at depot",
        "Business closed at delivery time, driver will retry",
        "Nobody available to sign for the package",
    ),
    Label.DELIVERY_DELAY: (
        "Parcel stuck in transit, {carrier} reports weather delay",
        "Delivery delayed - missed connection at hub",
        "running late, carrier says delivery pushed 2 days",
        "Customer chasing, shipment delayed beyond promised date",
        "{carrier} delay due to peak volume, ETA slipped",
        "late delivery, still in transit after {hours}h",
    ),
    Label.PICK_DELAY: (
        "Order not picked within SLA, released {hours}h ago",
        "Pick late - wave stuck, picker shortage on night shift",
        "still waiting to be picked",
        "Pick SLA breached, order sitting in pick queue",
        "not picked yet, aisle blocked by replen",
    ),
    Label.PACK_DELAY: (
        "Picked but not packed, pack station backlog",
        "Pack SLA breached - tote waiting at packing for {hours}h",
        "packing delayed, out of mailer boxes",
        "Pack bench down, order waiting to be packed",
        "tote parked at pack out, not packed",
    ),
    Label.MISSING_SCAN: (
        "No tracking updates for {hours}h, last scan at origin hub",
        "Tracking stalled - no scan since pickup",
        "label created but never scanned by {carrier}",
        "missing scan, package not seen since handover",
        "No movement on tracking, carrier trace needed?",
    ),
    Label.SYSTEM_ERROR: (
        "Integration error: order sync to WMS failed",
        "Label API returned 500, couldn't print label",
        "webhook failed, order stuck in ERP",
        "System error - EDI 856 rejected by carrier",
        "Sync timeout between Shopify and WMS, order duplicated?",
    ),
    Label.OTHER: (
        "Customer wants to add a gift message",
        "customer requests a copy of the invoice",
        "Asked to change the color of the item",
        "Customer asked about customs paperwork",
        "Please call customer re: loyalty points",
    ),
}

VAGUE_NOTES: tuple[str, ...] = (
    "pls check",
    "see ticket",
    "Customer called, escalate",
    "issue with order, investigate",
    "?",
    "follow up needed",
    "",
)

FIRST_NAMES = ("Ava", "Liam", "Noah", "Mia", "Sofia", "Lucas", "Emma", "Oliver", "Zoe", "Arjun")
LAST_NAMES = ("Smith", "Garcia", "Müller", "Okafor", "Nguyen", "Rossi", "Kowalski", "Patel")
MAIL_DOMAINS = ("example.com", "example.net", "example.org")

# (country, currency, city, province, zip, phone prefix): zips match the country's format;
# phones use fictional ranges (555-01xx in North America, 07700 900xxx in the UK).
PLACES: tuple[tuple[str, str, str, str, str, str], ...] = (
    ("US", "USD", "Springfield", "IL", "62704", "+1 217-555-01"),
    ("US", "USD", "Austin", "TX", "78701", "+1 512-555-01"),
    ("US", "USD", "Portland", "OR", "97205", "+1 503-555-01"),
    ("CA", "CAD", "Toronto", "ON", "M5V 2T6", "+1 416-555-01"),
    ("GB", "GBP", "Manchester", "ENG", "M1 1AE", "+44 7700 9000"),
    ("DE", "EUR", "Berlin", "BE", "10115", "+49 30 555 01"),
)
STREETS = ("Main St", "Oak Ave", "High Street", "Elm Rd", "Harbour Way", "Lindenstraße")
CATALOGUE: tuple[tuple[str, str, str], ...] = (
    ("MUG-CER-12", "Ceramic Mug 12oz", "14.00"),
    ("TEE-BLK-M", "Black Tee (M)", "24.00"),
    ("HOOD-GRY-L", "Grey Hoodie (L)", "58.00"),
    ("CNDL-LAV", "Lavender Candle", "19.50"),
    ("GLASS-SET4", "Glass Tumbler Set of 4", "32.00"),
    ("SOCK-3PK", "Socks 3-pack", "12.00"),
    ("BTL-STEEL", "Steel Bottle 750ml", "29.00"),
)
CARRIERS: tuple[tuple[str, str], ...] = (
    ("UPS", "Ground"),
    ("FedEx", "Home Delivery"),
    ("USPS", "Priority Mail"),
    ("DHL", "Express Worldwide"),
    ("Royal Mail", "Tracked 48"),
    ("DPD", "Next Day"),
)
CUSTOMER_NOTES = ("", "", "", "Please leave at the front door", "Gift - no prices", "Call first")
TAGS = ((), (), ("vip",), ("subscription",), ("wholesale",), ("peak", "promo-bf"))


@dataclass(frozen=True)
class Step:
    """One event to be: hours after the previous one. `key` marks the label's signature."""

    source: str
    type: str
    hours: float
    detail: str
    key: bool = False


@dataclass(frozen=True)
class Case:
    """One generated line and how it was made (for evaluation; never written to the file)."""

    line: dict[str, Any]
    label: Label
    ambiguous: bool


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


def _typo(rng: random.Random, text: str) -> str:
    """Swap two adjacent letters in one word, as hurried typing does."""
    words = text.split(" ")
    i = rng.randrange(len(words))
    w = words[i]
    if len(w) > 3:
        j = rng.randrange(len(w) - 1)
        words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    return " ".join(words)


def _roughen(rng: random.Random, text: str) -> str:
    """Typos (1 in 6) and shouting or lowercase (1 in 10 each)."""
    if text and rng.random() < 1 / 6:
        text = _typo(rng, text)
    roll = rng.random()
    if roll < 0.1:
        return text.upper()
    return text.lower() if roll < 0.2 else text


def _note(rng: random.Random, label: Label, ctx: dict[str, str]) -> str:
    return _roughen(rng, rng.choice(NOTES[label]).format(**ctx))


def _address(rng: random.Random, label: Label, name: str, phone: str) -> dict[str, Any]:
    country, _, city, province, zip_code, _ = rng.choice(PLACES)
    addr = {
        "name": name,
        "address1": f"{rng.randint(1, 999)} {rng.choice(STREETS)}",
        "address2": rng.choice(("", "", f"Apt {rng.randint(1, 40)}")),
        "city": city,
        "province": province,
        "zip": zip_code,
        "country_code": country,
        "phone": phone,
    }
    if label is Label.ADDRESS_INVALID and rng.random() < 0.75:
        field, bad = rng.choice((("zip", ""), ("zip", "0000"), ("address1", ""), ("city", "")))
        addr[field] = bad
    return addr


def _payload(rng: random.Random, label: Label, n: int, created: datetime) -> dict[str, Any]:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    place = rng.choice(PLACES)
    phone = f"{place[5]}{rng.randint(0, 99):02d}"
    items = [
        {"sku": sku, "title": title, "quantity": rng.randint(1, 3), "price": price}
        for sku, title, price in rng.sample(CATALOGUE, rng.randint(1, 3))
    ]
    total = sum(float(i["price"]) * i["quantity"] for i in items) + 4.99
    carrier, service = rng.choice(CARRIERS)
    return {
        "name": f"#{1000 + n}",
        "email": f"{first}.{last}{rng.randint(1, 99)}@{rng.choice(MAIL_DOMAINS)}".lower(),
        "phone": phone,
        "created_at": _iso(created),
        "financial_status": _financial_status(rng, label),
        "fulfillment_status": None if label is not Label.OTHER else rng.choice((None, "partial")),
        "currency": place[1],
        "total_price": f"{total:.2f}",
        "line_items": items,
        "shipping_address": _address(rng, label, f"{first} {last}", phone),
        "note": rng.choice(CUSTOMER_NOTES),
        "tags": list(rng.choice(TAGS)),
        "shipping_lines": [{"carrier": carrier, "service": service}],
    }


def _financial_status(rng: random.Random, label: Label) -> str:
    if label is Label.PAYMENT_FAILED:
        return rng.choice(("pending", "voided", "authorized", "pending"))
    return rng.choice(("paid",) * 12 + ("authorized", "refunded"))


def _iso(at: datetime) -> str:
    """ISO 8601 UTC to the second, with a Z, as Shopify and most carriers write it."""
    return at.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


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


def _other_label(rng: random.Random, label: Label) -> Label:
    return rng.choice([x for x in Label if x is not label and x is not Label.OTHER])


def _blur(rng: random.Random, label: Label, steps: list[Step], parts: dict[str, Any]) -> None:
    """Make one case ambiguous in one of three realistic ways (mutates `steps`/`parts`)."""
    mode = rng.choice(("conflict", "sparse", "mixed"))
    other = _other_label(rng, label)
    if mode == "conflict":  # the source system and the note point elsewhere
        parts["reason_code"] = rng.choice(REASON_CODES[other])
        parts["notes"] = _note(rng, other, parts["fill"])
    elif mode == "sparse":  # the telling events were never sent; the note says nothing
        steps[:] = [s for s in steps if not s.key]
        parts["notes"] = rng.choice(VAGUE_NOTES)
    else:  # two problems at once, and the note mentions the other one
        steps.extend(s for s in TIMELINES[other](rng, parts["carrier"]) if s.key)
        parts["notes"] = f"{parts['notes']} / {_note(rng, other, parts['fill'])}"


def _parts(rng: random.Random, label: Label, payload: dict[str, Any]) -> dict[str, Any]:
    """The exception's reason code and notes, and what note templates are filled with."""
    carrier = payload["shipping_lines"][0]["carrier"]
    fill = {
        "sku": payload["line_items"][0]["sku"],
        "carrier": carrier,
        "city": payload["shipping_address"]["city"] or "town",
        "hours": str(rng.randint(26, 96)),
    }
    return {
        "reason_code": rng.choice(REASON_CODES[label]),
        "notes": _note(rng, label, fill) if rng.random() < 0.9 else rng.choice(VAGUE_NOTES),
        "fill": fill,
        "carrier": carrier,
    }


def _case(rng: random.Random, tenant: str, n: int, seed: int, id_prefix: str) -> Case:
    label = rng.choices(list(LABEL_WEIGHTS), weights=list(LABEL_WEIGHTS.values()))[0]
    created = BASE_TIME + timedelta(minutes=rng.randint(0, 60 * 24 * 20))
    payload = _payload(rng, label, n, created)
    steps = TIMELINES[label](rng, payload["shipping_lines"][0]["carrier"])
    parts = _parts(rng, label, payload)
    ambiguous = rng.random() < AMBIGUOUS_SHARE
    if ambiguous:
        _blur(rng, label, steps, parts)
    raise_after_h = rng.uniform(*RAISE_AFTER_H.get(label, (0.1, 3.0)))
    events = _events(steps, created, raise_after_h)
    exception = {
        "external_id": f"{id_prefix}EXC-{seed}-{n:06d}",
        "reason_code": parts["reason_code"],
        "severity": rng.choice(SEVERITIES[label]),
        "notes": parts["notes"],
        "true_label": str(label),
    }
    order = {"external_id": f"{id_prefix}ORD-{seed}-{n:06d}", "payload": payload, "events": events}
    line = {"tenant": tenant, "order": order, "exception": exception}
    return Case(line=line, label=label, ambiguous=ambiguous)


def generate_cases(tenant: str, count: int, seed: int, id_prefix: str = "") -> Iterator[Case]:
    """`count` cases with their label and ambiguity flag; deterministic under `seed`.

    `id_prefix` is put before every external id, so repeated runs don't collide.
    """
    rng = random.Random(seed)
    for n in range(1, count + 1):
        yield _case(rng, tenant, n, seed, id_prefix)


def generate_lines(
    tenant: str, count: int, seed: int, id_prefix: str = ""
) -> Iterator[dict[str, Any]]:
    """`count` JSONL-ready dicts (one exception record with its order each)."""
    for case in generate_cases(tenant, count, seed, id_prefix):
        yield case.line


def write_jsonl(
    out: str | Path, *, tenant: str, count: int, seed: int, id_prefix: str = ""
) -> Path:
    """Write `count` lines to `out` (parent folders created); returns the path written."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for line in generate_lines(tenant, count, seed, id_prefix):
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    return path
