"""What the exception record says: reason codes, severities and ops notes as people write
them, with the typos and shouting that make them noisy."""

from __future__ import annotations

import random

from enrichment.core.taxonomy import Label

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
