"""JSONL ingestion: every good line lands whole, every bad line is named and skipped."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from enrichment.core import db
from enrichment.core.models import ExceptionRecord, Order, Tenant, utcnow
from enrichment.ingestion import ingest
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
        _dump(_with(good[0], "exception.external_id", "EXC-NEW-1")),  # 15 dup order id
        _dump(good[5]),  # 16
    ]  # fmt: skip
    path = _write(tmp_path / "mixed.jsonl", raws)

    report = ingest.ingest_file(factory, path)

    reasons = dict(report.rejected)
    assert report.loaded == 4
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 15]
    assert "Invalid JSON" in reasons[2]
    assert "exception.severity" in reasons[3]
    assert "exception.reason_code: Field required" in reasons[4]
    assert "exception.notes" in reasons[5] and "10000" in reasons[5]
    assert "UTF-8" in reasons[6]
    assert "unknown tenant 'nobody-here'" in reasons[7]
    assert "duplicate exception external_id" in reasons[9] and "line 1" in reasons[9]
    assert "surprise" in reasons[10]
    assert "true_label" in reasons[11]
    assert "timezone" in reasons[12]
    assert "duplicate order external_id" in reasons[15]
    assert _counts(factory) == (4, 4)
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


def test_loading_the_same_file_twice_adds_nothing(factory, tenant, tmp_path):
    path = _write(tmp_path / "twice.jsonl", [_dump(x) for x in _lines(20)])

    first = ingest.ingest_file(factory, path)
    second = ingest.ingest_file(factory, path)

    assert first.loaded == 20 and first.rejected == []
    assert second.loaded == 0
    assert [n for n, _ in second.rejected] == list(range(1, 21))
    assert all("already stored" in reason for _, reason in second.rejected)
    assert _counts(factory) == (20, 20)


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
    monkeypatch.setattr(ingest, "_drop_known", lambda session, lines, report: lines)
    path = _write(tmp_path / "race.jsonl", [_dump(x) for x in lines])

    report = ingest.ingest_file(factory, path)

    assert report.loaded == 2
    assert [n for n, _ in report.rejected] == [2]
    assert "duplicate or conflicting row" in report.rejected[0][1]
    assert _counts(factory) == (3, 3)
    assert _orphans(factory) == 0
    with factory() as session:
        stored = set(session.scalars(select(Order.external_id)))
    assert lines[1]["order"]["external_id"] not in stored


def test_unknown_tenants_are_created_only_when_asked(factory, tmp_path):
    path = _write(tmp_path / "new.jsonl", [_dump(x) for x in _lines(4, tenant="fresh-3pl")])

    refused = ingest.ingest_file(factory, path)
    accepted = ingest.ingest_file(factory, path, create_tenants=True)

    assert refused.loaded == 0 and len(refused.rejected) == 4
    assert accepted.loaded == 4 and accepted.rejected == []
    with factory() as session:
        assert session.scalar(select(Tenant.name)) == "fresh-3pl"


def test_bad_tenant_names_are_rejected_even_with_create(factory, tmp_path):
    path = _write(tmp_path / "bad.jsonl", [_dump(_with(_lines(1)[0], "tenant", "Not OK!"))])

    report = ingest.ingest_file(factory, path, create_tenants=True)

    assert report.loaded == 0
    assert "bad tenant name" in report.rejected[0][1]
    assert _counts(factory) == (0, 0)


def test_crlf_and_blank_lines_and_a_bom_are_tolerated(factory, tenant, tmp_path):
    lines = _lines(2)
    path = tmp_path / "windows.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + _dump(lines[0]) + b"\r\n\r\n" + _dump(lines[1]) + b"\r\n")

    report = ingest.ingest_file(factory, path)

    assert report.loaded == 2 and report.rejected == []


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

    assert report.loaded == 500
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

    assert report.loaded == 1
    assert report.rejected[0][0] == 1 and "NUL" in report.rejected[0][1]
    assert _counts(factory) == (1, 1)
