"""Shopify-like order payloads: customers, addresses, line items, carrier and payment status.

Emails and phones are personal data on purpose; they use reserved example domains and
fictional number ranges.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from enrichment.core.taxonomy import Label

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
