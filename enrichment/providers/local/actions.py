"""Which allow-listed actions resolve a classified record, and why."""

from __future__ import annotations

from enrichment.core.provider import RecordContext
from enrichment.core.taxonomy import ALLOWED_ACTIONS, Action, Label
from enrichment.providers.local.evidence import address_problems
from enrichment.providers.local.rules import NO_AUTOMATION_STATUSES

L = Label
ACTION_ORDER = {a: i for i, a in enumerate(Action)}


def _has_event(ctx: RecordContext, *types: str) -> bool:
    return any(e.get("type") in types for e in ctx.events if isinstance(e, dict))


def _carrier_involved(ctx: RecordContext) -> bool:
    return any(e.get("source") == "carrier" for e in ctx.events if isinstance(e, dict))


def _address_actions(ctx: RecordContext) -> set[Action]:
    # A missing field cannot be validated into existence: only the customer knows it.
    missing = any("missing" in p for p in address_problems(ctx.order.get("shipping_address")))
    extra = {Action.REQUEST_ADDRESS_CONFIRMATION} if missing else set()
    return {Action.VALIDATE_ADDRESS, *extra}


def _payment_actions(ctx: RecordContext) -> set[Action]:
    held = _has_event(ctx, "order_on_hold") or _carrier_involved(ctx)
    hold = set() if held else {Action.HOLD_SHIPMENT}
    return {Action.RETRY_PAYMENT, Action.NOTIFY_CUSTOMER, *hold}


def _inventory_actions(ctx: RecordContext) -> set[Action]:
    several = len(ctx.order.get("line_items") or []) > 1
    split = {Action.SPLIT_SHIPMENT} if several else set()
    return {Action.REALLOCATE_STOCK, Action.NOTIFY_CUSTOMER, *split}


def _damage_actions(ctx: RecordContext) -> set[Action]:
    if not _carrier_involved(ctx):  # broken in our warehouse: replace it, no claim to file
        return {Action.RESHIP_ORDER}
    return {Action.OPEN_CARRIER_CLAIM, Action.RESHIP_ORDER, Action.NOTIFY_CUSTOMER}


ACTION_RULES = {
    L.ADDRESS_INVALID: _address_actions,
    L.PAYMENT_FAILED: _payment_actions,
    L.INVENTORY_SHORTAGE: _inventory_actions,
    L.DAMAGED_PACKAGE: _damage_actions,
    L.CUSTOMER_UNAVAILABLE: lambda ctx: {Action.RESCHEDULE_DELIVERY, Action.NOTIFY_CUSTOMER},
    L.DELIVERY_DELAY: lambda ctx: {Action.OPEN_CARRIER_TRACE, Action.NOTIFY_CUSTOMER},
    L.PICK_DELAY: lambda ctx: {Action.PRIORITIZE_PICK},
    L.PACK_DELAY: lambda ctx: {Action.PRIORITIZE_PACK},
    L.MISSING_SCAN: lambda ctx: {Action.OPEN_CARRIER_TRACE},
}


def plan(ctx: RecordContext, label: Label) -> tuple[list[Action], str]:
    """Allow-listed actions for `label` given the record, and why."""
    status = ctx.order.get("financial_status")
    if label is not L.PAYMENT_FAILED and status in NO_AUTOMATION_STATUSES:
        return [], f"order is {status}: a person must decide"
    rule = ACTION_RULES.get(label)
    if rule is None:
        return [], f"{label} needs a person: no automated action exists"
    actions = rule(ctx) & ALLOWED_ACTIONS[label]
    return sorted(actions, key=ACTION_ORDER.__getitem__), f"rules for {label}"
