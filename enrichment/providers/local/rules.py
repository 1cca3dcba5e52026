"""What the rules know about the structure of a record: evidence weights, telling event types,
words in event types we have not met, carrier exception codes, reason-code hints, postal code
shapes and the SLAs a stage is late after. The note phrases live in `lexicon`."""

from __future__ import annotations

import re

from enrichment.core.taxonomy import Label

L = Label

# Evidence weights. Events are what systems observed; timing and the payload are structure;
# notes are what people wrote; the reason code is the weakest: source systems reuse a few
# codes for many problems.
W_EVENT = 3.0
W_EVENT_DETAIL = 2.0
W_CODE = 3.0
W_TIMING = 2.5
W_ADDRESS = 2.5
W_PAYMENT_STATUS = 1.5
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
# Milestones: their presence alone is not a problem. In flow order (for "how far it got").
FLOW = (
    "order_created", "payment_authorized", "payment_captured", "allocated",
    "released_to_pick", "picked", "packed", "label_created", "picked_up",
    "in_transit", "out_for_delivery", "delivered",
)  # fmt: skip
MILESTONES = frozenset({*FLOW, "exception_opened"})
# Other systems' names for the same events (a WMS says "wave_released", a carrier
# "arrival_scan"): read as ours, so timing and evidence do not depend on whose feed it is.
EVENT_ALIASES: dict[str, str] = {
    **dict.fromkeys(("order_placed", "order_received", "order_imported"), "order_created"),
    **dict.fromkeys(("authorized", "payment_authorised", "auth_approved"), "payment_authorized"),
    **dict.fromkeys(("paid", "payment_received", "payment_settled", "captured"),
                    "payment_captured"),
    **dict.fromkeys(("inventory_allocated", "stock_reserved", "reserved"), "allocated"),
    **dict.fromkeys(("wave_released", "pick_released", "released", "pick_task_created"),
                    "released_to_pick"),
    **dict.fromkeys(("pick_confirmed", "pick_complete", "picking_completed"), "picked"),
    **dict.fromkeys(("pack_confirmed", "pack_complete", "packing_completed", "cartonized"),
                    "packed"),
    **dict.fromkeys(("label_printed", "shipment_created", "manifested", "label_generated"),
                    "label_created"),
    **dict.fromkeys(("collected", "carrier_pickup", "pickup_scan", "origin_scan",
                     "accepted_at_origin"), "picked_up"),
    **dict.fromkeys(("arrival_scan", "departure_scan", "arrived_at_facility",
                     "departed_facility", "hub_scan", "processed_at_facility"), "in_transit"),
    **dict.fromkeys(("with_courier", "on_vehicle_for_delivery", "out_for_delivery_scan"),
                    "out_for_delivery"),
    **dict.fromkeys(("proof_of_delivery", "pod", "delivery_confirmed"), "delivered"),
    **dict.fromkeys(("delivery_attempt", "attempted_delivery", "failed_delivery_attempt",
                     "delivery_failed"), "delivery_attempted"),
    **dict.fromkeys(("address_invalid", "address_check_failed", "invalid_address"),
                    "address_validation_failed"),
    **dict.fromkeys(("payment_failed", "card_declined", "payment_refused"), "payment_declined"),
    **dict.fromkeys(("out_of_stock", "no_stock", "inventory_shortage"), "stockout"),
    **dict.fromkeys(("damaged", "damage_reported", "parcel_damaged"), "package_damaged"),
    "exception_created": "exception_opened",
    "ticket_opened": "exception_opened",
}  # fmt: skip
ADDRESS_OK_EVENTS = frozenset({"address_validated", "address_verified"})
# Carrier events that are a physical scan (a label being printed is not).
SCANS = frozenset({"picked_up", "in_transit", "out_for_delivery", "delivered", "arrived_at_hub",
                   "departed_hub", "delivery_attempted", "held_at_facility"})  # fmt: skip

# Word stems in an event type we have no entry for ("parcel_crushed", "ndr_raised"): what
# they point at. The first entry whose stems all occur in the type wins, so "pick_overdue"
# is a late pick before "overdue" can say anything else.
EVENT_STEMS: tuple[tuple[tuple[str, ...], Label], ...] = (
    (("pick", "late"), L.PICK_DELAY), (("pick", "sla"), L.PICK_DELAY),
    (("pick", "overdue"), L.PICK_DELAY), (("pack", "late"), L.PACK_DELAY),
    (("pack", "sla"), L.PACK_DELAY), (("pack", "overdue"), L.PACK_DELAY),
    (("damag",), L.DAMAGED_PACKAGE), (("crush",), L.DAMAGED_PACKAGE),
    (("broke",), L.DAMAGED_PACKAGE), (("attempt",), L.CUSTOMER_UNAVAILABLE),
    (("ndr",), L.CUSTOMER_UNAVAILABLE), (("notice",), L.CUSTOMER_UNAVAILABLE),
    (("addr",), L.ADDRESS_INVALID), (("zip",), L.ADDRESS_INVALID),
    (("postal",), L.ADDRESS_INVALID), (("declin",), L.PAYMENT_FAILED),
    (("payment", "fail"), L.PAYMENT_FAILED), (("fraud",), L.PAYMENT_FAILED),
    (("stock",), L.INVENTORY_SHORTAGE), (("alloc",), L.INVENTORY_SHORTAGE),
    (("short",), L.INVENTORY_SHORTAGE), (("backorder",), L.INVENTORY_SHORTAGE),
    (("delay",), L.DELIVERY_DELAY), (("late",), L.DELIVERY_DELAY),
    (("weather",), L.DELIVERY_DELAY), (("stall",), L.MISSING_SCAN), (("lost",), L.MISSING_SCAN),
    (("no", "scan"), L.MISSING_SCAN), (("error",), L.SYSTEM_ERROR),
    (("sync",), L.SYSTEM_ERROR), (("timeout",), L.SYSTEM_ERROR),
)  # fmt: skip

# Exception codes carriers write into event details. FedEx's DEX codes and the X12 214
# status reasons our carriers' EDI feeds use; the detail text of the event is read too.
CARRIER_CODES: tuple[tuple[re.Pattern[str], Label], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), label)
    for pattern, label in (
        (r"\bDEX ?-?0?3\b", L.ADDRESS_INVALID),  # incorrect recipient address
        (r"\bDEX ?-?0?8\b", L.CUSTOMER_UNAVAILABLE),  # recipient not in / business closed
        (r"\bDEX ?-?0?7\b", L.OTHER),  # refused by recipient: a person decides
        (r"\b(?:status reason|AT7)\W+A2\b", L.ADDRESS_INVALID),  # incorrect address
        (r"\b(?:status reason|AT7)\W+A1\b", L.CUSTOMER_UNAVAILABLE),  # missed delivery
        (r"\b(?:status reason|AT7)\W+AO\b", L.DELIVERY_DELAY),  # weather
        (r"\b(?:status reason|AT7)\W+AK\b", L.DAMAGED_PACKAGE),  # damaged, rewrapped
    )
)

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
    code: re.compile(pattern, re.IGNORECASE)
    for code, pattern in {
        "US": r"^\d{5}(?:-\d{4})?$", "CA": r"^[A-Z]\d[A-Z] ?\d[A-Z]\d$",
        "GB": r"^[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}$", "IE": r"^[A-Z]\d[\dW] ?[A-Z\d]{4}$",
        "DE": r"^\d{5}$", "FR": r"^\d{5}$", "ES": r"^\d{5}$", "IT": r"^\d{5}$", "MX": r"^\d{5}$",
        "FI": r"^\d{5}$", "AU": r"^\d{4}$", "AT": r"^\d{4}$", "BE": r"^\d{4}$", "CH": r"^\d{4}$",
        "DK": r"^\d{4}$", "NO": r"^\d{4}$", "NL": r"^\d{4} ?[A-Z]{2}$", "PL": r"^\d{2}-\d{3}$",
        "PT": r"^\d{4}-\d{3}$", "SE": r"^\d{3} ?\d{2}$", "CZ": r"^\d{3} ?\d{2}$",
        "BR": r"^\d{5}-?\d{3}$", "JP": r"^\d{3}-?\d{4}$", "IN": r"^\d{6}$",
    }.items()
}  # fmt: skip
REQUIRED_ADDRESS = ("address1", "city", "zip", "country_code")
# What people type into a field they cannot or will not fill.
PLACEHOLDERS = frozenset({"n/a", "na", "none", "-", ".", "?", "x", "xx", "unknown", "tbd",
                          "same as billing", "same", "null"})  # fmt: skip
UNPAID_STATUSES = frozenset({"pending", "voided"})
# Orders whose money went back: shipping anything automatically would be wrong.
NO_AUTOMATION_STATUSES = frozenset({"refunded", "voided"})

# Hours after which a stage counts as late (the SLAs the demo tenant works to).
PICK_SLA_H = 24.0
PACK_SLA_H = 12.0
SCAN_GAP_H = 72.0
# Packed but no carrier scan for this long: the carrier never collected it.
COLLECT_SLA_H = 36.0
# Collected, scans still coming, not delivered after this long: late in transit.
TRANSIT_SLA_H = 96.0
# Paid, nothing allocated for this long: the stock is not there.
ALLOCATE_SLA_H = 12.0
