"""What the rules know: evidence weights, telling event types, note phrases, reason-code
hints, postal code shapes and the SLAs a stage is late after."""

from __future__ import annotations

import re

from enrichment.core.taxonomy import Label

L = Label

# Evidence weights. Events are what systems observed; notes are what people wrote;
# the reason code is the weakest: source systems reuse a few codes for many problems.
W_EVENT = 3.0
W_EVENT_DETAIL = 2.0
W_TIMING = 2.5
W_ADDRESS = 2.5
W_PAYMENT_STATUS = 1.5
W_NOTE_FIRST, W_NOTE_MORE = 1.5, 0.75
W_REASON = 1.0
W_HEALTHY = 2.0

EVENT_LABELS: dict[str, Label] = {
    "address_validation_failed": L.ADDRESS_INVALID,
    "address_correction_required": L.ADDRESS_INVALID,
    "undeliverable_address": L.ADDRESS_INVALID,
    "payment_declined": L.PAYMENT_FAILED,
    "authorization_failed": L.PAYMENT_FAILED,
    "capture_failed": L.PAYMENT_FAILED,
    "chargeback": L.PAYMENT_FAILED,
    "allocation_failed": L.INVENTORY_SHORTAGE,
    "short_pick": L.INVENTORY_SHORTAGE,
    "stockout": L.INVENTORY_SHORTAGE,
    "package_damaged": L.DAMAGED_PACKAGE,
    "damaged_in_transit": L.DAMAGED_PACKAGE,
    "damaged_in_warehouse": L.DAMAGED_PACKAGE,
    "delivery_attempted": L.CUSTOMER_UNAVAILABLE,
    "delivery_attempt_failed": L.CUSTOMER_UNAVAILABLE,
    "held_at_facility": L.CUSTOMER_UNAVAILABLE,
    "delayed": L.DELIVERY_DELAY,
    "delivery_delayed": L.DELIVERY_DELAY,
    "missed_connection": L.DELIVERY_DELAY,
    "pick_sla_breached": L.PICK_DELAY,
    "pack_sla_breached": L.PACK_DELAY,
    "tracking_stalled": L.MISSING_SCAN,
    "no_scan": L.MISSING_SCAN,
    "integration_error": L.SYSTEM_ERROR,
    "webhook_failed": L.SYSTEM_ERROR,
    "label_generation_failed": L.SYSTEM_ERROR,
    "edi_rejected": L.SYSTEM_ERROR,
    "sync_failed": L.SYSTEM_ERROR,
}
# Catch-all event types whose meaning is only in the free-text detail.
GENERIC_EVENTS = frozenset({"exception", "label_failed", "order_on_hold", "alert", "status_update"})
# Milestones: their presence alone is not a problem.
MILESTONES = frozenset(
    {
        "order_created", "payment_authorized", "payment_captured", "allocated",
        "released_to_pick", "picked", "packed", "label_created", "picked_up",
        "in_transit", "out_for_delivery", "delivered", "exception_opened",
    }
)  # fmt: skip

# Phrases per label, matched on word boundaries, case-insensitive (regex fragments).
NOTE_KEYWORDS: dict[Label, tuple[str, ...]] = {
    L.ADDRESS_INVALID: (
        r"addr(?:ess)?", r"zip", r"post ?code", r"postal code", r"no such street",
        r"apartment", r"apt", r"undeliverable", r"address verification",
    ),
    L.PAYMENT_FAILED: (
        r"payment", r"card", r"declined", r"auth(?:orization)?", r"capture[d]?",
        r"gateway", r"insufficient funds", r"do_not_honor", r"chargeback",
    ),
    L.INVENTORY_SHORTAGE: (
        r"short pick", r"out of stock", r"oos", r"stock", r"inventory", r"bin empty",
        r"backorder", r"cycle count", r"on hand",
    ),
    L.DAMAGED_PACKAGE: (
        r"damaged?", r"crushed", r"broken", r"cracked", r"contents exposed", r"dented",
    ),
    L.CUSTOMER_UNAVAILABLE: (
        r"no one home", r"not home", r"nobody", r"no one to sign", r"not available",
        r"recipient", r"business closed", r"notice left", r"delivery attempted",
        r"(?:2nd|second|failed) attempt", r"held at (?:depot|facility)",
    ),
    L.DELIVERY_DELAY: (
        r"delay(?:ed)?", r"stuck in transit", r"weather", r"missed connection",
        r"late delivery", r"running late", r"eta", r"promised date", r"peak volume",
    ),
    L.PICK_DELAY: (
        r"not picked", r"pick(?:ing)? (?:late|sla|queue)", r"to be picked", r"wave",
        r"picker", r"replen",
    ),
    L.PACK_DELAY: (
        r"not packed", r"pack(?:ing)? (?:station|bench|sla|out)", r"to be packed",
        r"packing (?:delayed|backlog)", r"tote", r"mailer",
    ),
    L.MISSING_SCAN: (
        r"no (?:tracking )?(?:scan|updates?|movement)", r"tracking stalled",
        r"never scanned", r"missing scan", r"last scan", r"not seen", r"trace",
    ),
    L.SYSTEM_ERROR: (
        r"integration", r"sync", r"api", r"webhook", r"http 5\d\d", r"500", r"edi",
        r"system error", r"erp", r"timeout",
    ),
    L.OTHER: (
        r"gift", r"invoice", r"customs", r"loyalty", r"change the", r"copy of",
    ),
}  # fmt: skip
NOTE_PATTERNS: dict[Label, tuple[re.Pattern[str], ...]] = {
    label: tuple(re.compile(rf"\b{p}\b", re.IGNORECASE) for p in phrases)
    for label, phrases in NOTE_KEYWORDS.items()
}

# Reason codes as source systems send them, normalized to UPPER_SNAKE. A shared code
# (SLA_BREACH, CARRIER_EXC) splits its weak weight between the labels it may mean.
REASON_HINTS: dict[str, tuple[Label, ...]] = {
    "ADDR_CHECK": (L.ADDRESS_INVALID,),
    "ADDRESS": (L.ADDRESS_INVALID,),
    "ADDR_INVALID": (L.ADDRESS_INVALID,),
    "PAYMENT": (L.PAYMENT_FAILED,),
    "PAY_HOLD": (L.PAYMENT_FAILED,),
    "PAY_DECLINE": (L.PAYMENT_FAILED,),
    "SHORT_PICK": (L.INVENTORY_SHORTAGE,),
    "OOS": (L.INVENTORY_SHORTAGE,),
    "INV_SHORT": (L.INVENTORY_SHORTAGE,),
    "STOCKOUT": (L.INVENTORY_SHORTAGE,),
    "DAMAGE": (L.DAMAGED_PACKAGE,),
    "DMG": (L.DAMAGED_PACKAGE,),
    "NDR": (L.CUSTOMER_UNAVAILABLE,),
    "DELIVERY_ATTEMPT": (L.CUSTOMER_UNAVAILABLE,),
    "LATE_DELIVERY": (L.DELIVERY_DELAY,),
    "LATE_PICK": (L.PICK_DELAY,),
    "LATE_PACK": (L.PACK_DELAY,),
    "NO_SCAN": (L.MISSING_SCAN,),
    "TRACKING": (L.MISSING_SCAN,),
    "SYS_ERR": (L.SYSTEM_ERROR,),
    "INTEGRATION": (L.SYSTEM_ERROR,),
    "CS_REQUEST": (L.OTHER,),
    "MISC": (L.OTHER,),
    "SLA_BREACH": (L.DELIVERY_DELAY, L.PICK_DELAY, L.PACK_DELAY, L.MISSING_SCAN),
    "CARRIER_EXC": (L.DAMAGED_PACKAGE, L.CUSTOMER_UNAVAILABLE, L.DELIVERY_DELAY, L.MISSING_SCAN),
}

# Postal code shapes per country; a code that does not fit will not get a label printed.
ZIP_FORMATS: dict[str, re.Pattern[str]] = {
    "US": re.compile(r"^\d{5}(?:-\d{4})?$"),
    "CA": re.compile(r"^[A-Z]\d[A-Z] ?\d[A-Z]\d$", re.IGNORECASE),
    "GB": re.compile(r"^[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}$", re.IGNORECASE),
    "DE": re.compile(r"^\d{5}$"),
    "FR": re.compile(r"^\d{5}$"),
    "AU": re.compile(r"^\d{4}$"),
}
REQUIRED_ADDRESS = ("address1", "city", "zip", "country_code")
UNPAID_STATUSES = frozenset({"pending", "voided"})
# Orders whose money went back: shipping anything automatically would be wrong.
NO_AUTOMATION_STATUSES = frozenset({"refunded", "voided"})

# Hours after which a stage counts as late (the SLAs the demo tenant works to).
PICK_SLA_H = 24.0
PACK_SLA_H = 12.0
SCAN_GAP_H = 72.0
