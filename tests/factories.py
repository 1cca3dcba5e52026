"""Build tenants, orders and records for tests with one call each."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy.orm import Session

from enrichment.core.models import ExceptionRecord, Order, Tenant

_seq = itertools.count(1)


def make_tenant(session: Session, name: str = "demo-3pl", **kw: Any) -> Tenant:
    tenant = Tenant(name=name, **kw)
    session.add(tenant)
    session.flush()
    return tenant


def make_record(session: Session, tenant: Tenant, **kw: Any) -> ExceptionRecord:
    n = next(_seq)
    order = Order(
        tenant_id=tenant.id,
        external_id=f"order-{n}",
        payload=kw.pop(
            "payload",
            {
                "name": f"#{1000 + n}",
                "financial_status": "paid",
                "fulfillment_status": None,
                "line_items": [{"sku": "SKU-1", "title": "Mug", "quantity": 1, "price": "9.50"}],
                "shipping_address": {
                    "address1": "1 Main St",
                    "city": "Springfield",
                    "zip": "12345",
                    "country_code": "US",
                },
            },
        ),
        events=kw.pop(
            "events",
            [
                {
                    "source": "carrier",
                    "type": "package_damaged",
                    "at": "2026-11-20T10:00:00Z",
                    "detail": "box crushed",
                }
            ],
        ),
    )
    session.add(order)
    session.flush()
    rec = ExceptionRecord(
        tenant_id=tenant.id,
        order_id=order.id,
        external_id=f"exc-{n}",
        reason_code=kw.pop("reason_code", "DAMAGE"),
        severity=kw.pop("severity", "high"),
        notes=kw.pop("notes", "Customer reports the parcel arrived crushed."),
        **kw,
    )
    session.add(rec)
    session.flush()
    return rec
