"""A tenant's history with one customer's personal data in every place it can be: the order,
its record, attempts, outbox events, deliveries, actions, reviews and shadow answers.
Shared by the archive and erasure tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import MetaData, select
from sqlalchemy.orm import Session

from enrichment.core import audit
from enrichment.core.delivery_log import WebhookDelivery
from enrichment.core.models import (
    EnrichmentAttempt,
    ExceptionRecord,
    Order,
    OutboxEvent,
    ResolutionAction,
    Review,
    Tenant,
)
from enrichment.core.shadow_answers import ShadowAnswer
from tests.factories import make_record

AT = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Customer:
    name: str
    email: str
    phone: str
    street: str
    city: str
    zip: str

    @property
    def strings(self) -> list[str]:
        last = self.name.split()[1]
        return [self.name, last, self.email, self.phone, self.street, self.city, self.zip]

    def payload(self, n: int) -> dict[str, Any]:
        address = {"name": self.name, "address1": self.street, "city": self.city,
                   "zip": self.zip, "country_code": "DE", "phone": self.phone}  # fmt: skip
        return {
            "name": f"#{5000 + n}",
            "email": self.email,
            "phone": self.phone,
            "financial_status": "paid",
            "line_items": [{"sku": "MUG-1", "title": "Mug", "quantity": 2, "price": "9.50"}],
            "shipping_address": address,
            "customer": {
                "first_name": self.name.split()[0],
                "last_name": self.name.split()[1],
                "email": self.email,
            },  # fmt: skip
            "note": f"Please call {self.name} on {self.phone} before delivery",
        }


ZOE = Customer("Zoe Quenneville", "zoe.q77@example.org", "+49 30 555 0144", "429 Oakridge Ave",
               "Toronto", "M5V 2T6")  # fmt: skip
OTTO = Customer("Otto Brandtmeier", "otto.b@example.net", "+1 415 555 0199", "12 Pinecrest Rd",
                "Sacramento", "95814")  # fmt: skip
UMA = Customer("Uma Castellanos", "uma.c@example.com", "+34 91 555 0123", "8 Calle Mayorca",
               "Valencia", "46001")  # fmt: skip


def add_history(s: Session, tenant: Tenant, who: Customer, n: int) -> ExceptionRecord:
    """An enriched, reviewed record of `who`'s order, and every row that refers to it."""
    events = [{"source": "carrier", "type": "delivery_attempted", "at": "2026-11-20T09:00:00Z",
               "detail": f"No one at {who.street} to sign; called {who.phone}"}]  # fmt: skip
    rec = make_record(
        s, tenant, payload=who.payload(n), events=events,
        notes=f"Customer {who.name} ({who.email}) says the parcel never came",
        ai_label="CUSTOMER_UNAVAILABLE", ai_confidence=0.91, status="OPEN",
        ai_notes=f"{who.name} was not home at {who.street}",
        ai_analysis={"problems": [f"nobody at {who.street}"], "summary": f"{who.name} absent"},
        ai_resolution={"automatable": True, "actions": ["reschedule_delivery"],
                       "rationale": f"call {who.phone}"},
        ai_source={"classify": {"provider": "local", "model": "nb", "prompt_version": "v2"}},
        enrichment_state={"analyze": {"status": "COMPLETED"}, "classify": {"status": "COMPLETED"}},
        escalation_reason=f"customer {who.email} unreachable",
        final_label="CUSTOMER_UNAVAILABLE", decided_by="human", reviewed_at=AT,
        enriched_at=AT, created_at=AT, updated_at=AT,
    )  # fmt: skip
    s.get(Order, rec.order_id).created_at = AT  # its history is archived by days from AT
    action = ResolutionAction(tenant_id=tenant.id, record_id=rec.id, action="reschedule_delivery",
                              note=f"rebooked for {who.name}", created_at=AT)  # fmt: skip
    s.add(action)
    s.flush()
    for stage, error in (("analyze", f"invalid answer: '{who.email}' is not a label"),
                         ("classify", None)):  # fmt: skip
        s.add(EnrichmentAttempt(
            tenant_id=tenant.id, record_id=rec.id, stage=stage,
            outcome="failed" if error else "succeeded", error=error, latency_s=0.2,
            provider="local", detail={"notes": f"about {who.name}"}, created_at=AT,
        ))  # fmt: skip
    data = {"tenant": tenant.name, "record": rec.external_id, "label": "CUSTOMER_UNAVAILABLE",
            "analysis": rec.ai_analysis, "rationale": f"call {who.phone}"}  # fmt: skip
    event = OutboxEvent(tenant_id=tenant.id, record_id=rec.id, type="record.enriched", data=data,
                        status="delivered", last_error=f"receiver said: no {who.email}",
                        created_at=AT)  # fmt: skip
    s.add(event)
    s.flush()
    s.add(WebhookDelivery(tenant_id=tenant.id, event_id=event.id, event_type="record.enriched",
                          at=AT, outcome="retried", error=f"HTTP 400 {who.email}"))  # fmt: skip
    s.add(Review(tenant_id=tenant.id, record_id=rec.id, kind="audit", reviewer="Ada",
                 label="CUSTOMER_UNAVAILABLE", actions=["reschedule_delivery"],
                 note=f"spoke to {who.name} on {who.phone}", created_at=AT))  # fmt: skip
    s.add(ShadowAnswer(tenant_id=tenant.id, record_id=rec.id, stage="classify", variant="b",
                       provider="local", label="OTHER", confidence=0.4, cost_usd=0.0,
                       latency_s=0.1))  # fmt: skip
    audit.record(s, tenant.id, "cli:test", audit.REVIEWED, rec.external_id, label="OTHER")
    s.flush()
    return rec


def tenant_rows(s: Session, tenant_id: int) -> dict[str, list[dict[str, Any]]]:
    """Every row of the tenant in every table with a tenant_id, read from the database
    itself (so a table no list names is read too)."""
    meta = MetaData()
    meta.reflect(bind=s.connection())
    out = {}
    for table in meta.sorted_tables:
        if "tenant_id" in table.c:
            q = select(table).where(table.c.tenant_id == tenant_id)
            out[table.name] = [dict(r) for r in s.execute(q).mappings()]
    return out


def found(text: str, customer: Customer) -> list[str]:
    """The customer's strings that occur in `text` (case-insensitive)."""
    low = text.lower()
    return [x for x in customer.strings if x.lower() in low]
