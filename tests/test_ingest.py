"""JSONL ingestion: every good line lands whole, every bad line is named and skipped."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from enrichment import cli
from enrichment.core import db
from enrichment.core.models import ExceptionRecord, Order, Tenant, utcnow
from enrichment.core.settings import get_settings
from enrichment.ingestion import ingest, write
from enrichment.tooling import generate
from tests.conftest import migrate
from tests.factories import make_tenant


def _lines(count: int, *, seed: int = 1, tenant: str = "demo-3pl") -> list[dict]:
    return list(generate.generate_lines(tenant, count, seed))


def _dump(line: dict) -> bytes:
    return json.dumps(line).encode()


def _write(path, raws: list[bytes]):
    path.write_bytes(b"\n".join(raws) + b"\n")
    return path


def _counts(factory) -> tuple[int, int]:
    with factory() as session:
        orders = session.scalar(select(func.count()).select_from(Order))
        records = session.scalar(select(func.count()).select_from(ExceptionRecord))
    return orders, records


def _orphans(factory) -> int:
    with factory() as session:
        used = select(ExceptionRecord.order_id)
        return session.scalar(select(func.count()).select_from(Order).where(Order.id.not_in(used)))


@pytest.fixture
def tenant(factory):
    with factory.begin() as session:
        return make_tenant(session, "demo-3pl").id


def _with(line: dict, path: str, value) -> dict:
    """A deep copy of `line` with the dotted `path` set (or removed when value is ...)."""
    copy = json.loads(json.dumps(line))
    *parents, last = path.split(".")
    target = copy
    for key in parents:
        target = target[key]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return copy


def test_mixed_file_loads_exactly_the_good_lines(factory, tenant, tmp_path):
    good = _lines(6)
    raws = [
        _dump(good[0]),  # 1
        b'{"tenant": "demo-3pl", "order": ',  # 2 malformed JSON
        _dump(_with(good[1], "exception.severity", 3)),  # 3 wrong type
        _dump(_with(good[1], "exception.reason_code", ...)),  # 4 missing field
        _dump(_with(good[1], "exception.notes", "x" * 1_000_000)),  # 5 1 MB notes
        _dump(good[1])[:40] + b"\xff\xfe" + _dump(good[1])[40:],  # 6 invalid UTF-8
        _dump(_with(good[1], "tenant", "nobody-here")),  # 7 unknown tenant
        _dump(good[2]),  # 8
        _dump(_with(good[0], "order.external_id", "ORD-NEW-1")),  # 9 dup exception id, new order
        _dump({**good[3], "surprise": True}),  # 10 unknown top-level key
        _dump(_with(good[3], "exception.true_label", "LOST_IN_SPACE")),  # 11 invalid label
        _dump(_with(good[3], "order.events", [{"source": "wms", "type": "picked",
                                               "at": "2026-11-02T10:00:00", "detail": ""}])),
        b"",  # 13 blank: skipped, not an error
        _dump(good[4]),  # 14
        _dump(_with(good[0], "exception.external_id", "EXC-NEW-1")),  # 15 2nd exception, order 1
        _dump(good[5]),  # 16
    ]  # fmt: skip
    path = _write(tmp_path / "mixed.jsonl", raws)

    report = ingest.ingest_file(factory, path)

    reasons = dict(report.rejected)
    assert report.created == 5
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7, 9, 10, 11, 12]
    assert "Invalid JSON" in reasons[2]
    assert "exception.severity" in reasons[3]
    assert "exception.reason_code: Field required" in reasons[4]
    assert "exception.notes" in reasons[5] and "10,000" in reasons[5]
    assert "UTF-8" in reasons[6]
    assert "unknown tenant 'nobody-here'" in reasons[7]
    assert "duplicate exception external_id" in reasons[9] and "line 1" in reasons[9]
    assert "surprise" in reasons[10]
    assert "true_label" in reasons[11]
    assert "timezone" in reasons[12]
    assert _counts(factory) == (4, 5)
    assert _orphans(factory) == 0


def test_records_are_due_now_and_keep_the_reference_label(factory, tenant, tmp_path):
    lines = _lines(3)
    path = _write(tmp_path / "ok.jsonl", [_dump(x) for x in lines])
    before = utcnow()

    ingest.ingest_file(factory, path)

    with factory() as session:
        records = session.scalars(select(ExceptionRecord).order_by(ExceptionRecord.id)).all()
        order = session.get(Order, records[0].order_id)
    assert [r.reference_label for r in records] == [x["exception"]["true_label"] for x in lines]
    assert all(before <= r.next_attempt_at <= utcnow() + timedelta(seconds=1) for r in records)
    assert all(r.next_attempt_at.tzinfo is not None for r in records)
    assert all(r.ai_label is None and r.ai_confidence is None for r in records)
    assert all(r.tenant_id == tenant and r.enrichment_retry_count == 0 for r in records)
    assert order.payload == lines[0]["order"]["payload"]
    assert order.events == lines[0]["order"]["events"]


def test_a_race_lost_inside_a_batch_costs_only_that_line(factory, tenant, tmp_path, monkeypatch):
    # Given another writer stored EXC-RACE after our duplicate check ran (simulated by
    # skipping the check), when the batch INSERT fails, then only that line is rejected.
    lines = _lines(3)
    lines[1] = _with(lines[1], "exception.external_id", "EXC-RACE")
    with factory.begin() as session:
        order = Order(tenant_id=tenant, external_id="ORD-OTHER", payload={}, events=[])
        session.add(order)
        session.flush()
        session.add(ExceptionRecord(tenant_id=tenant, order_id=order.id, external_id="EXC-RACE",
                                    reason_code="X", severity="low"))  # fmt: skip
    monkeypatch.setattr(write, "_stored_exceptions", lambda session, keys: {})
    path = _write(tmp_path / "race.jsonl", [_dump(x) for x in lines])

    report = ingest.ingest_file(factory, path)

    assert report.created == 2
    assert [n for n, _ in report.rejected] == [2]
    assert "duplicate or conflicting row" in report.rejected[0][1]
    assert "violates" not in report.rejected[0][1]  # no database text
    assert _counts(factory) == (3, 3)
    assert _orphans(factory) == 0
    with factory() as session:
        stored = set(session.scalars(select(Order.external_id)))
    assert lines[1]["order"]["external_id"] not in stored


def test_unknown_tenants_are_created_only_when_asked(factory, tmp_path):
    path = _write(tmp_path / "new.jsonl", [_dump(x) for x in _lines(4, tenant="fresh-3pl")])

    refused = ingest.ingest_file(factory, path)
    accepted = ingest.ingest_file(factory, path, create_tenants=True)

    assert refused.created == 0 and len(refused.rejected) == 4
    assert accepted.created == 4 and accepted.rejected == []
    with factory() as session:
        assert session.scalar(select(Tenant.name)) == "fresh-3pl"


def test_bad_tenant_names_are_rejected_even_with_create(factory, tmp_path):
    path = _write(tmp_path / "bad.jsonl", [_dump(_with(_lines(1)[0], "tenant", "Not OK!"))])

    report = ingest.ingest_file(factory, path, create_tenants=True)

    assert report.created == 0
    assert "bad tenant name" in report.rejected[0][1]
    assert _counts(factory) == (0, 0)


def test_crlf_and_blank_lines_and_a_bom_are_tolerated(factory, tenant, tmp_path):
    lines = _lines(2)
    path = tmp_path / "windows.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + _dump(lines[0]) + b"\r\n\r\n" + _dump(lines[1]) + b"\r\n")

    report = ingest.ingest_file(factory, path)

    assert report.created == 2 and report.rejected == []


def test_sqlite_loads_five_hundred_records_fast_and_still_rejects_bad_lines(tmp_path):
    url = f"sqlite:///{tmp_path / 'ingest.db'}"
    migrate(url)
    lines = [_dump(x) for x in _lines(500, seed=7)]
    lines.insert(250, b"not json")
    lines.append(lines[0])  # a duplicate of line 1
    path = _write(tmp_path / "demo.jsonl", lines)
    factory = db.session_factory(url)

    started = time.perf_counter()
    report = ingest.ingest_file(factory, path, create_tenants=True)
    elapsed_s = time.perf_counter() - started

    assert report.created == 500
    assert [n for n, _ in report.rejected] == [251, 502]
    assert elapsed_s < 5.0
    assert _counts(factory) == (500, 500)
    assert _orphans(factory) == 0
    db.get_engine(url).dispose()


def test_a_nul_character_rejects_its_line_not_the_load(factory, tenant, tmp_path):
    lines = _lines(2)
    path = _write(
        tmp_path / "nul.jsonl",
        [_dump(_with(lines[0], "exception.notes", "a\x00b")), _dump(lines[1])],
    )

    report = ingest.ingest_file(factory, path)

    assert report.created == 1
    assert report.rejected[0][0] == 1 and "NUL" in report.rejected[0][1]
    assert _counts(factory) == (1, 1)


def _stamps(factory) -> list[tuple]:
    """Every stored row as the ingest could change it, to prove a replay wrote nothing."""
    with factory() as session:
        orders = session.execute(
            select(Order.id, Order.payload, Order.events).order_by(Order.id)
        ).all()
        records = session.execute(
            select(ExceptionRecord.id, ExceptionRecord.updated_at).order_by(ExceptionRecord.id)
        ).all()
    return [*map(tuple, orders), *map(tuple, records)]


def _event(source: str, kind: str, at: str) -> dict:
    return {"source": source, "type": kind, "at": at, "detail": ""}


def _run_cli(factory, path, monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.setenv("DATABASE_URL", factory().get_bind().url.render_as_string(False))
    get_settings.cache_clear()
    try:
        code = cli.main(["ingest", str(path)])
    finally:
        get_settings.cache_clear()
    return code, capsys.readouterr().out


def test_replaying_a_file_is_all_unchanged_and_writes_nothing(
    factory, tenant, tmp_path, monkeypatch, capsys
):
    # Given a file of 30 lines, two of them a second exception on an order with a newer payload
    lines = _lines(28)
    second = _with(lines[0], "exception.external_id", "EXC-SECOND")
    second = _with(second, "order.payload.financial_status", "paid")
    lines += [second, _with(lines[1], "exception.external_id", "EXC-THIRD")]
    path = _write(tmp_path / "feed.jsonl", [_dump(x) for x in lines])
    first = ingest.ingest_file(factory, path)
    before = (_counts(factory), _stamps(factory))

    # When the same file is loaded again, through the library and through the CLI
    replay = ingest.ingest_file(factory, path)
    code, out = _run_cli(factory, path, monkeypatch, capsys)

    # Then every line is unchanged, nothing is rejected or written, and the CLI exits 0
    assert (first.created, first.updated, first.unchanged, first.rejected) == (30, 0, 0, [])
    assert (replay.created, replay.updated, replay.unchanged, replay.rejected) == (0, 0, 30, [])
    assert code == 0 and "created 0, updated 0 (reopened 0), unchanged 30, rejected 0" in out
    assert (_counts(factory), _stamps(factory)) == before == ((28, 30), before[1])


def test_a_second_exception_on_a_known_order_joins_it_and_merges_events(factory, tenant, tmp_path):
    # Given an order stored with one exception (a pick delay) and two events
    first = _with(_lines(1)[0], "order.events", [
        _event("wms", "pick_delayed", "2026-11-02T10:00:00Z"),
        _event("carrier", "label_created", "2026-11-02T11:00:00Z"),
    ])  # fmt: skip
    ingest.ingest_file(factory, _write(tmp_path / "a.jsonl", [_dump(first)]))

    # When a later line brings a carrier delay for the same order, repeating one event
    # (written with another offset), adding one, and carrying an older one it had missed
    later = _with(first, "exception.external_id", "EXC-CARRIER-DELAY")
    later = _with(later, "exception.reason_code", "CARRIER_DELAY")
    later = _with(later, "order.payload", {"name": "#1001", "fulfillment_status": "partial"})
    later = _with(later, "order.events", [
        _event("carrier", "delayed", "2026-11-03T09:00:00Z"),
        _event("carrier", "label_created", "2026-11-02T12:00:00+01:00"),
        _event("system", "order_created", "2026-11-01T08:00:00Z"),
    ])  # fmt: skip
    report = ingest.ingest_file(factory, _write(tmp_path / "b.jsonl", [_dump(later)]))

    # Then it is stored on the same order, whose payload is the new one and whose events
    # are merged, deduplicated and in time order
    assert (report.created, report.updated, report.unchanged, report.rejected) == (1, 0, 0, [])
    assert _counts(factory) == (1, 2)
    with factory() as session:
        order = session.scalar(select(Order))
        records = session.scalars(select(ExceptionRecord).order_by(ExceptionRecord.id)).all()
    assert [r.order_id for r in records] == [order.id, order.id]
    assert records[1].reason_code == "CARRIER_DELAY" and records[1].tenant_id == tenant
    assert order.payload == {"name": "#1001", "fulfillment_status": "partial"}
    assert [(e["type"], e["at"]) for e in order.events] == [
        ("order_created", "2026-11-01T08:00:00Z"),
        ("pick_delayed", "2026-11-02T10:00:00Z"),
        ("label_created", "2026-11-02T11:00:00Z"),
        ("delayed", "2026-11-03T09:00:00Z"),
    ]


def test_a_changed_exception_line_updates_its_record(factory, tenant, tmp_path):
    # Given a stored line, not enriched yet
    line = _lines(1)[0]
    ingest.ingest_file(factory, _write(tmp_path / "a.jsonl", [_dump(line)]))

    # When the same exception comes again with another severity and a newer order payload
    severity = "low" if line["exception"]["severity"] != "low" else "critical"
    changed = _with(line, "exception.severity", severity)
    changed = _with(changed, "order.payload.financial_status", "refunded")
    report = ingest.ingest_file(factory, _write(tmp_path / "b.jsonl", [_dump(changed)]))
    replay = ingest.ingest_file(factory, _write(tmp_path / "c.jsonl", [_dump(changed)]))

    # Then it is updated in place (no new rows, nothing reopened), and a replay is unchanged
    assert (report.created, report.updated, report.reopened, report.rejected) == (0, 1, 0, [])
    assert (replay.updated, replay.unchanged) == (0, 1)
    assert _counts(factory) == (1, 1)
    with factory() as session:
        record = session.scalar(select(ExceptionRecord))
        order = session.get(Order, record.order_id)
    assert record.severity == severity and order.payload["financial_status"] == "refunded"


def test_an_exception_never_moves_to_another_order(factory, tenant, tmp_path):
    # Given a stored line
    line = _lines(1)[0]
    ingest.ingest_file(factory, _write(tmp_path / "a.jsonl", [_dump(line)]))
    before = (_counts(factory), _stamps(factory))

    # When the same exception comes again on another order
    moved = _with(line, "order.external_id", "ORD-SOMEWHERE-ELSE")
    report = ingest.ingest_file(factory, _write(tmp_path / "b.jsonl", [_dump(moved)]))

    # Then the line is rejected naming both orders, and nothing is written
    ext, was = line["exception"]["external_id"], line["order"]["external_id"]
    assert (report.created, report.updated, report.unchanged) == (0, 0, 0)
    assert report.rejected == [
        (1, f"exception {ext!r} is stored on order {was!r};"
            " it cannot move to order 'ORD-SOMEWHERE-ELSE'")
    ]  # fmt: skip
    assert (_counts(factory), _stamps(factory)) == before


def test_two_exceptions_for_one_order_in_one_file_both_load(factory, tenant, tmp_path):
    # Given one file with two exceptions on one new order, and a repeated exception id
    first = _with(
        _lines(1)[0], "order.events", [_event("wms", "pick_delayed", "2026-11-02T10:00:00Z")]
    )
    second = _with(first, "exception.external_id", "EXC-SECOND")
    second = _with(second, "order.events", [_event("carrier", "delayed", "2026-11-03T10:00:00Z")])
    path = _write(tmp_path / "two.jsonl", [_dump(first), _dump(second), _dump(second)])

    # When it is loaded
    report = ingest.ingest_file(factory, path)

    # Then both exceptions land on one order holding both events; the repeat is rejected
    assert report.created == 2 and [n for n, _ in report.rejected] == [3]
    assert "duplicate exception external_id 'EXC-SECOND': first on line 2" in report.rejected[0][1]
    assert _counts(factory) == (1, 2)
    assert _orphans(factory) == 0
    with factory() as session:
        order = session.scalar(select(Order))
    assert [e["type"] for e in order.events] == ["pick_delayed", "delayed"]


def test_a_file_line_reopens_an_enriched_record_only_with_reenrich(
    factory, tenant, tmp_path, monkeypatch, capsys
):
    # Given an enriched record loaded from a file
    line = _lines(1)[0]
    ingest.ingest_file(factory, _write(tmp_path / "a.jsonl", [_dump(line)]))
    with factory.begin() as session:
        record = session.scalar(select(ExceptionRecord))
        record.ai_label, record.ai_confidence, record.enriched_at = "OTHER", 0.9, utcnow()

    # When a changed line comes without reenrich (through the CLI), then with it
    changed = _with(line, "exception.notes", "the customer called again")
    code, out = _run_cli(factory, _write(tmp_path / "b.jsonl", [_dump(changed)]), monkeypatch,
                         capsys)  # fmt: skip
    kept = _stored_ai(factory)
    again = _with(_with(changed, "exception.notes", "and again"), "reenrich", True)
    report = ingest.ingest_file(factory, _write(tmp_path / "c.jsonl", [_dump(again)]))

    # Then the first keeps the result and says how to re-enrich; the second reopens it
    assert code == 0 and "created 0, updated 1 (reopened 0), unchanged 0, rejected 0" in out
    assert '"reenrich": true' in out and kept == ("OTHER", True)
    assert (report.updated, report.reopened, report.rejected) == (1, 1, [])
    assert _stored_ai(factory) == (None, False)


def _stored_ai(factory) -> tuple:
    with factory() as session:
        record = session.scalar(select(ExceptionRecord))
    return record.ai_label, record.enriched_at is not None
