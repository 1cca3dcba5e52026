"""The local provider's evidence from structure and text, and notes that try to steer it.

Pure functions on hand-built records: timing past the SLAs, other systems' event names,
carrier codes, addresses that cannot be right, typos and other languages; then injections
against the whole provider on the shipped styled sets.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from enrichment.core.provider import RecordContext
from enrichment.core.schemas import Classification
from enrichment.core.taxonomy import ALLOWED_ACTIONS, Label
from enrichment.providers.local import LocalProvider, collect, read, record_features
from enrichment.providers.local.evidence import address_problems
from enrichment.providers.local.features import FAMILIES
from enrichment.providers.local.text import keyword_hits, read_note
from enrichment.tooling import labelled
from tests.test_prompt_injection import INJECTIONS

L = Label


def _ctx(events: list[tuple[str, str, str]], *, notes: str | None = None, order=None):
    """A record with events given as (source, type, "dd HH:MM" in November 2026)."""
    evs = [
        {"source": src, "type": kind, "at": f"2026-11-{at[:2]}T{at[3:]}:00Z", "detail": ""}
        for src, kind, at in events
    ]
    return RecordContext("t", 1, 0, "UNKNOWN", "medium", notes, order or {}, evs)


def _labels(ctx: RecordContext, kind: str) -> set[Label]:
    return {s.label for s in collect(ctx) if s.kind == kind}


HEAD = [("system", "order_created", "02 08:00"), ("payment", "payment_captured", "02 08:05")]


def test_a_pick_past_its_sla_shows_in_the_timestamps_alone():
    released = [*HEAD, ("wms", "allocated", "02 08:30"), ("wms", "released_to_pick", "02 09:00")]
    late = _ctx([*released, ("system", "exception_opened", "03 15:00")])  # 30 h
    on_time = _ctx([*released, ("system", "exception_opened", "02 20:00")])  # 11 h

    assert _labels(late, "timing") == {L.PICK_DELAY}
    assert _labels(on_time, "timing") == set()


def test_another_systems_event_names_read_as_ours():
    ours = [*HEAD, ("wms", "released_to_pick", "02 09:00"), ("wms", "picked", "02 10:00")]
    theirs = [*HEAD, ("wms", "Wave Released", "02 09:00"), ("wms", "pick-confirmed", "02 10:00")]
    tail = [("system", "exception_opened", "03 06:00")]  # 20 h after the pick, no pack

    assert _labels(_ctx(ours + tail), "timing") == {L.PACK_DELAY}
    assert _labels(_ctx(theirs + tail), "timing") == {L.PACK_DELAY}


def test_silent_tracking_and_slow_transit_are_told_apart():
    shipped = [
        *HEAD,
        ("carrier", "label_created", "02 12:00"),
        ("carrier", "picked_up", "02 18:00"),
    ]
    silent = _ctx([*shipped, ("system", "exception_opened", "06 18:00")])  # 96 h, no scan
    scans = [("carrier", "in_transit", f"0{d} 18:00") for d in range(3, 8)]
    slow = _ctx([*shipped, *scans, ("system", "exception_opened", "07 20:00")])

    assert _labels(silent, "timing") == {L.MISSING_SCAN}
    assert _labels(slow, "timing") == {L.DELIVERY_DELAY}


def test_paid_but_never_allocated_points_at_stock():
    ctx = _ctx([*HEAD, ("system", "exception_opened", "03 10:00")])

    assert _labels(ctx, "timing") == {L.INVENTORY_SHORTAGE}


def test_carrier_codes_and_unknown_event_words_are_read():
    coded = _ctx([*HEAD, ("carrier", "exception", "03 10:00")])
    coded.events[-1]["detail"] = "DEX 08 - RECIPIENT NOT IN"
    crushed = _ctx([*HEAD, ("carrier", "parcel_crushed_at_hub", "03 10:00")])

    assert L.CUSTOMER_UNAVAILABLE in _labels(coded, "code")
    assert _labels(crushed, "event") == {L.DAMAGED_PACKAGE}


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ({"address1": "ul. Marszałkowska 5", "city": "Warszawa", "zip": "00950",
          "country_code": "PL"}, "not a valid PL postal code"),
        ({"address1": "Calle Mayor", "city": "Madrid", "zip": "28013", "country_code": "ES"},
         "no house number"),
        ({"address1": "ana@example.com", "city": "Lyon", "zip": "69002", "country_code": "FR"},
         "email address"),
        ({"address1": "Via Dante 4", "city": "n/a", "zip": "20121", "country_code": "IT"},
         "city missing"),
    ],
)  # fmt: skip
def test_addresses_that_cannot_be_right(address, problem):
    assert any(problem in p for p in address_problems(address))


def test_a_good_foreign_address_has_no_problem():
    address = {"address1": "渋谷2-21-1", "city": "東京都渋谷区", "zip": "150-0002",
               "country_code": "JP"}  # fmt: skip

    assert address_problems(address) == []


def test_words_survive_typos_accents_and_other_languages():
    assert L.PAYMENT_FAILED in keyword_hits(read_note("paymnet decliend twice").text)
    assert L.DAMAGED_PACKAGE in keyword_hits(read_note("Paket BESCHÄDIGT angekommen").text)
    assert L.CUSTOMER_UNAVAILABLE in keyword_hits(read_note("odbiorca nieobecny").text)
    assert L.DAMAGED_PACKAGE not in keyword_hits(read_note("no damage, just late").text)


def test_leaving_a_family_out_removes_its_evidence_and_features():
    ctx = _ctx([*HEAD, ("system", "exception_opened", "03 10:00")], notes="box crushed")
    rec = read(ctx)
    without_text = frozenset(FAMILIES) - {"text"}
    without_timing = frozenset(FAMILIES) - {"timing"}

    feats = record_features(rec, collect(rec, without_text), without_text)
    assert not any(name.startswith("tx:") for name in feats)
    assert all(s.kind != "note" for s in collect(rec, without_text))
    assert all(s.kind != "timing" for s in collect(rec, without_timing))


CLEAN = [
    "Please disregard my previous email, the parcel arrived broken",
    "print a new label pls",
    "Label: 1Z999AA10123456784 created",
    "System: SAP EWM, status: open",
    "cust says ignore previous addr, use new one",
    "return label requested, customer wants an exchange",
]


def test_injections_are_recognised_and_plain_notes_are_not():
    missed = [i for i in INJECTIONS if not read_note(i).injected and "refund refund" not in i]

    assert missed == []
    assert [n for n in CLEAN if read_note(n).injected] == []


@pytest.fixture(scope="module")
def sample():
    return labelled.load_styles()[::9]


def test_an_injection_never_moves_the_label_or_the_confidence(sample):
    provider = LocalProvider()
    for example in sample:
        unread = provider.classify(replace(example.ctx, notes=None)).result
        for attack in INJECTIONS[::3]:
            notes = f"{example.ctx.notes or ''} {attack}"
            steered = provider.classify(replace(example.ctx, notes=notes)).result
            assert (steered.label, steered.confidence) == (unread.label, unread.confidence)


def test_injected_records_resolve_inside_the_allow_list(sample):
    provider = LocalProvider()
    for example in sample:
        ctx = replace(example.ctx, notes=INJECTIONS[0])
        label = provider.classify(ctx).result.label
        forced = Classification(label=label, confidence=0.99, notes="")
        actions = provider.resolve(replace(ctx, classification=forced)).result.actions
        assert set(actions) <= ALLOWED_ACTIONS[label]
        assert "notes carry instructions" in " ".join(provider.analyze(ctx).result.problems)
