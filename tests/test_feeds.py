"""Feeds as they come (issue 23): object details and unfamiliar sources, on real PostgreSQL.

An event's `detail` is text or a JSON object kept as sent within the record limits; its
`source` is any short name, lowercased. The API, `enrichment ingest` and `enrichment eval
--data` read the same lines through one parser, and the local provider reads an object
detail's keys and values and an unfamiliar source's words.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from enrichment.core import record_limits, tenants
from enrichment.core.models import ExceptionRecord, Order
from enrichment.core.order_events import detail_text
from enrichment.core.pipeline import run_stage
from enrichment.core.provider import RecordContext
from enrichment.core.selection import claim_due
from enrichment.core.settings_sections import RecordLimits
from enrichment.ingestion.lines import LineError, parse_item
from enrichment.providers.local import LocalProvider, collect

URL = "/api/enrichment/records/{}"
CHAIN = ("order_analysis", "classification", "automation")
PAYMENT = {"gateway": "shopify_payments", "amount": "201.96", "status": "captured"}
HELPDESK = {
    "channel": "email",
    "summary": "customer says the parcel arrived crushed, contents broken",
}


def event(source: str, kind: str, at: str, detail=None) -> dict:
    return {"source": source, "type": kind, "at": at, "detail": detail if detail else ""}


def line(ext: str = "EXC-1", events: list | None = None, **exception) -> dict:
    return {
        "tenant": "feeds-3pl",
        "order": {
            "external_id": f"ORD-{ext}",
            "payload": {"name": "#1001", "financial_status": "paid"},
            "events": events
            if events is not None
            else [
                event("Shopify", "payment_captured", "2026-11-18T09:00:00Z", PAYMENT),
                event("carrier", "delivered", "2026-11-20T15:00:00Z"),
                event("customer_service", "customer_message", "2026-11-21T10:00:00Z", HELPDESK),
            ],
        },
        "exception": {
            "external_id": ext,
            "reason_code": "CUSTOMER_CONTACT",
            "severity": "medium",
            **exception,
        },
    }


def deep(levels: int) -> dict:
    """{"a": {"a": ... 1}} nested `levels` deep, built without recursion."""
    value: dict | int = 1
    for _ in range(levels):
        value = {"a": value}
    return value


# ---------------------------------------------------------------- the line format (pure)


def test_an_object_detail_is_kept_as_sent_and_a_source_lowercased():
    parsed = parse_item(line(), "feeds-3pl")
    stored = [e.model_dump(mode="json") for e in parsed.order.events]
    assert [e["source"] for e in stored] == ["shopify", "carrier", "customer_service"]
    assert stored[0]["detail"] == PAYMENT and stored[2]["detail"] == HELPDESK
    assert stored[1]["detail"] == ""


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"source": "customer service"}, "source", "1 to 32 characters of a-z"),
        ({"source": "x" * 33}, "source", "1 to 32 characters"),
        ({"source": "lieferant-ü"}, "source", "not 'lieferant-ü'"),
        ({"detail": 42}, "detail", "a string or a JSON object"),
        ({"detail": ["a", "b"]}, "detail", "a string or a JSON object"),
        ({"detail": "x" * 2001}, "detail", "at most 2000 characters"),
        ({"detail": deep(17)}, "detail.a.a.a", "nested deeper than the limit of 16"),
        ({"detail": {"k" * 257: 1}}, "detail", "over the 256 character limit"),
        ({"detail": {f"k{i}": i for i in range(1001)}}, "detail", "more than 1,000 keys"),
        ({"detail": {"note": "n" * 10_001}}, "detail.note", "over the 10,000 character limit"),
        ({"detail": {"a": "x" * 6000, "b": "y" * 6000}}, "detail", "as JSON, over the 10,000"),
    ],
)
def test_a_bad_source_or_detail_is_refused_with_its_field_and_reason(change, field, fragment):
    bad = line(events=[{**event("wms", "picked", "2026-11-18T09:00:00Z"), **change}])
    with pytest.raises(LineError) as refused:
        parse_item(bad, "feeds-3pl")
    assert refused.value.field.startswith(f"order.events.0.{field}")
    assert fragment in str(refused.value) and "\n" not in str(refused.value)


def test_a_stored_event_over_the_limits_is_a_record_fault_before_any_ai_call():
    ctx = RecordContext(
        tenant="t", record_id=1, attempt=0, reason_code="X", severity="low", notes=None,
        order={}, events=[{"source": "x", "detail": {"a": "x" * 6000, "b": "y" * 6000}}],
    )  # fmt: skip
    fault = record_limits.refusal(ctx, RecordLimits())
    assert fault is not None and "events.0.detail" in str(fault)


def test_an_object_detail_reads_as_bounded_text():
    assert detail_text(PAYMENT) == "gateway: shopify_payments; amount: 201.96; status: captured"
    assert detail_text({"a": {"b": [1, None]}}) == "a.b.0: 1; a.b.1: "
    assert len(detail_text(deep(5000))) < 100  # no recursion, and a deep object is cut
    assert len(detail_text({f"k{i}": "v" * 500 for i in range(1000)})) == 2000


def test_the_local_provider_reads_an_object_detail_and_an_unfamiliar_sources_words():
    parsed = parse_item(line(), "feeds-3pl")
    ctx = RecordContext(
        tenant="feeds-3pl", record_id=1, attempt=0, reason_code="CUSTOMER_CONTACT",
        severity="medium", notes=None, order=parsed.order.payload,
        events=[e.model_dump(mode="json") for e in parsed.order.events],
    )  # fmt: skip
    result = LocalProvider().classify(ctx).result
    assert result.label == "DAMAGED_PACKAGE"
    assert "summary: customer says the parcel arrived crushed" in result.notes
    checked = [event("address_verification", "result", "2026-11-18T09:00:00Z")]
    found = collect(RecordContext(**{**ctx.__dict__, "events": checked}))
    assert [(x.label, x.text) for x in found if x.kind == "event detail"] == [
        ("ADDRESS_INVALID", "address_verification event result (address, address verification)")
    ]
    known = [event("wms", "result", "2026-11-18T09:00:00Z")]  # a known source's name is not words
    assert not collect(RecordContext(**{**ctx.__dict__, "events": known}))


# ---------------------------------------------------------------- ingest and enrich


@pytest.fixture
def key(factory):
    with factory.begin() as s:
        return tenants.create_tenant(s, "feeds-3pl")[1]


def post(client, key, items):
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    body = json.dumps({"items": items}).encode()
    return client.post(URL.format("feeds-3pl"), content=body, headers=headers)


def enrich_all(factory, settings) -> list[list[str]]:
    with factory.begin() as s:
        claims = claim_due(s, settings)
    provider, kinds = LocalProvider(), []
    for c in claims:
        kinds.append([])
        for stage in CHAIN:
            out = run_stage(
                factory, provider, settings, stage=stage, record_id=c.record_id,
                lease_token=c.lease_token,
            )  # fmt: skip
            kinds[-1].append(out.kind)
            if out.kind != "continue":
                break
    return kinds


def test_the_api_ingests_feed_shaped_events_and_the_local_provider_enriches_them(
    client, key, factory, settings
):
    too_deep = line("EXC-2", events=[event("wms", "x", "2026-11-18T09:00:00Z", deep(20))])

    r = post(client, key, [line(), too_deep])

    assert r.status_code == 200, r.text
    created, refused = r.json()["items"]
    assert created["result"] == "created"
    assert refused["result"] == "rejected" and refused["field"].startswith("order.events.0.detail")
    assert "nested deeper than the limit of 16" in refused["reason"]
    with factory() as s:
        order = s.scalar(select(Order).where(Order.external_id == "ORD-EXC-1"))
        assert (
            order.events[0]["detail"] == PAYMENT and order.events[2]["source"] == "customer_service"
        )
    assert enrich_all(factory, settings) == [["continue", "continue", "done"]]
    with factory() as s:
        rec = s.scalar(select(ExceptionRecord).where(ExceptionRecord.external_id == "EXC-1"))
    assert rec.enriched_at is not None and rec.ai_label == "DAMAGED_PACKAGE"
    assert post(client, key, [line()]).json()["items"][0]["result"] == "unchanged"


def write_file(path, lines: list[dict]):
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return path


def test_the_cli_ingests_the_same_file_and_eval_reads_it(cli, factory, tmp_path):
    labelled = [line(f"EXC-{i}", true_label="DAMAGED_PACKAGE") for i in range(3)]
    bad = line("EXC-9", events=[event("Customer Service", "x", "2026-11-18T09:00:00Z")])
    path = write_file(tmp_path / "feed.jsonl", [*labelled, bad])

    code, out, err = cli("ingest", str(path), "--create-tenants")

    assert code == 1 and "created 3," in out and "rejected 1" in out
    assert "line 4: rejected: order.events.0.source:" in err
    with factory() as s:
        assert (
            s.scalar(select(Order).where(Order.external_id == "ORD-EXC-0")).events[0]["detail"]
            == PAYMENT
        )

    code, out, err = cli("eval", "--data", str(path), "--out-dir", str(tmp_path / "eval"))

    assert code == 0, err
    assert "feed.jsonl, 1 lines refused: 3 records (0 failed)" in out
    assert "accuracy  1.000" in out
    assert "line 4 refused: order.events.0.source:" in err


def test_the_review_pages_timeline_shows_an_object_detail_as_text(client, key, factory):
    from enrichment.api.review_page import _timeline
    from enrichment.core.models import utcnow
    from enrichment.core.story import story

    detail = {**HELPDESK, "html": "<script>alert(1)</script>"}
    sent = line(
        events=[event("customer_service", "customer_message", "2026-11-21T10:00:00Z", detail)]
    )
    assert post(client, key, [sent]).json()["items"][0]["result"] == "created"
    with factory() as s:
        told = story(s, tenants.by_name(s, "feeds-3pl"), "EXC-1", now=utcnow())

    [moment] = [m for m in _timeline(told) if m.what == "customer_service: customer_message"]

    # Text for the template, which escapes it like any other (autoescape); PostgreSQL's
    # jsonb keeps an object's keys in its own order, not the sender's.
    assert sorted(moment.detail.split("; ")) == [
        "channel: email",
        "html: <script>alert(1)</script>",
        "summary: customer says the parcel arrived crushed, contents broken",
    ]
