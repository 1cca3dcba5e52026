"""The one label taxonomy and the per-label action allow-list. Extend them here only."""

from __future__ import annotations

from enum import StrEnum


class Label(StrEnum):
    ADDRESS_INVALID = "ADDRESS_INVALID"
    PAYMENT_FAILED = "PAYMENT_FAILED"
    INVENTORY_SHORTAGE = "INVENTORY_SHORTAGE"
    DAMAGED_PACKAGE = "DAMAGED_PACKAGE"
    CUSTOMER_UNAVAILABLE = "CUSTOMER_UNAVAILABLE"
    DELIVERY_DELAY = "DELIVERY_DELAY"
    PICK_DELAY = "PICK_DELAY"
    PACK_DELAY = "PACK_DELAY"
    MISSING_SCAN = "MISSING_SCAN"
    SYSTEM_ERROR = "SYSTEM_ERROR"
    OTHER = "OTHER"


class Action(StrEnum):
    REQUEST_ADDRESS_CONFIRMATION = "REQUEST_ADDRESS_CONFIRMATION"
    VALIDATE_ADDRESS = "VALIDATE_ADDRESS"
    RETRY_PAYMENT = "RETRY_PAYMENT"
    HOLD_SHIPMENT = "HOLD_SHIPMENT"
    NOTIFY_CUSTOMER = "NOTIFY_CUSTOMER"
    REALLOCATE_STOCK = "REALLOCATE_STOCK"
    SPLIT_SHIPMENT = "SPLIT_SHIPMENT"
    OPEN_CARRIER_CLAIM = "OPEN_CARRIER_CLAIM"
    RESHIP_ORDER = "RESHIP_ORDER"
    RESCHEDULE_DELIVERY = "RESCHEDULE_DELIVERY"
    OPEN_CARRIER_TRACE = "OPEN_CARRIER_TRACE"
    PRIORITIZE_PICK = "PRIORITIZE_PICK"
    PRIORITIZE_PACK = "PRIORITIZE_PACK"


# What an automated resolution may do for each label. Money never moves automatically
# (no refunds), and labels that need a person allow nothing.
ALLOWED_ACTIONS: dict[Label, frozenset[Action]] = {
    Label.ADDRESS_INVALID: frozenset(
        {Action.VALIDATE_ADDRESS, Action.REQUEST_ADDRESS_CONFIRMATION}
    ),
    Label.PAYMENT_FAILED: frozenset(
        {Action.RETRY_PAYMENT, Action.HOLD_SHIPMENT, Action.NOTIFY_CUSTOMER}
    ),
    Label.INVENTORY_SHORTAGE: frozenset(
        {Action.REALLOCATE_STOCK, Action.SPLIT_SHIPMENT, Action.NOTIFY_CUSTOMER}
    ),
    Label.DAMAGED_PACKAGE: frozenset(
        {Action.OPEN_CARRIER_CLAIM, Action.RESHIP_ORDER, Action.NOTIFY_CUSTOMER}
    ),
    Label.CUSTOMER_UNAVAILABLE: frozenset({Action.RESCHEDULE_DELIVERY, Action.NOTIFY_CUSTOMER}),
    Label.DELIVERY_DELAY: frozenset({Action.OPEN_CARRIER_TRACE, Action.NOTIFY_CUSTOMER}),
    Label.PICK_DELAY: frozenset({Action.PRIORITIZE_PICK}),
    Label.PACK_DELAY: frozenset({Action.PRIORITIZE_PACK}),
    Label.MISSING_SCAN: frozenset({Action.OPEN_CARRIER_TRACE}),
    Label.SYSTEM_ERROR: frozenset(),
    Label.OTHER: frozenset(),
}


def disallowed_actions(label: Label, actions: list[Action]) -> list[Action]:
    """The actions that the allow-list does not permit for `label` (empty when all are fine)."""
    allowed = ALLOWED_ACTIONS[label]
    return [a for a in actions if a not in allowed]


# Tenants' reason codes that name a label in other words: the same problem, so a tenant's
# exception attaches to the one the order analysis raised (core/order_raise.py).
REASON_ALIASES: dict[str, Label] = {
    "LATE_PICK": Label.PICK_DELAY, "PICK_LATE": Label.PICK_DELAY,
    "LATE_PACK": Label.PACK_DELAY, "PACK_LATE": Label.PACK_DELAY,
    "SHORT_PICK": Label.INVENTORY_SHORTAGE, "OUT_OF_STOCK": Label.INVENTORY_SHORTAGE,
    "NO_SCAN": Label.MISSING_SCAN, "SCAN_MISSING": Label.MISSING_SCAN,
    "LATE_DELIVERY": Label.DELIVERY_DELAY, "DELAYED": Label.DELIVERY_DELAY,
    "BAD_ADDRESS": Label.ADDRESS_INVALID, "PAYMENT_DECLINED": Label.PAYMENT_FAILED,
}  # fmt: skip


def reason_label(reason_code: str | None) -> Label | None:
    """The label a reason code names ("PICK_DELAY", "late-pick"), or None."""
    code = "_".join((reason_code or "").upper().replace("-", " ").split())
    return Label(code) if code in Label.__members__ else REASON_ALIASES.get(code)
