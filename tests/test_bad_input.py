"""Ingestion under bad input: every line is accepted or rejected with its number and a reason,
nothing is ever half written, and the load never crashes.

Given JSONL files mixing valid lines with malformed JSON, wrong types, missing fields, 1 MB
notes, invalid UTF-8, NUL characters, duplicates and unknown tenants (hypothesis picks the
mix and the order), when they are ingested, then exactly the valid lines are stored, each
with its order, and every other line is reported.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import text

from enrichment import cli
from enrichment.core.models import Base
from enrichment.core.settings import get_settings
from enrichment.core.tenants import get_or_create
from enrichment.ingestion import ingest

TENANT = "known-3pl"
FUZZ = hsettings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def valid_line(n: int, tenant: str = TENANT) -> dict:
    return {
        "tenant": tenant,
        "order": {
            "external_id": f"ORD-{n}",
            "payload": {"name": f"#{n}", "line_items": [{"sku": "S", "quantity": 1}]},
            "events": [{"source": "carrier", "type": "delayed", "at": "2026-11-20T10:00:00Z"}],
        },
        "exception": {
            "external_id": f"EXC-{n}",
            "reason_code": "LATE",
            "severity": "high",
            "notes": "Parcel is late.",
        },
    }


def _dumps(obj) -> bytes:
    return json.dumps(obj).encode()


def _mutated(n: int, path: tuple[str, ...], value) -> bytes:
    line = valid_line(n)
    node = line
    for key in path[:-1]:
        node = node[key]
    if value is _DROP:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return _dumps(line)


_DROP = object()
# kind -> (builder of the line's bytes for record number n, whether it must be accepted)
BAD_KINDS = {
    "missing_tenant": lambda n: _mutated(n, ("tenant",), _DROP),
    "missing_order_id": lambda n: _mutated(n, ("order", "external_id"), _DROP),
    "missing_severity": lambda n: _mutated(n, ("exception", "severity"), _DROP),
    "severity_int": lambda n: _mutated(n, ("exception", "severity"), 3),
    "bad_severity": lambda n: _mutated(n, ("exception", "severity"), "apocalyptic"),
    "payload_list": lambda n: _mutated(n, ("order", "payload"), [1, 2]),
    "events_string": lambda n: _mutated(n, ("order", "events"), "none"),
    "id_int": lambda n: _mutated(n, ("exception", "external_id"), 12),
    "naive_time": lambda n: _mutated(
        n, ("order", "events"), [{"source": "wms", "type": "x", "at": "2026-11-20T10:00:00"}]
    ),
    "huge_notes": lambda n: _mutated(n, ("exception", "notes"), "x" * 1_000_000),
    "huge_line": lambda n: _mutated(n, ("order", "payload"), {"blob": "y" * 2_100_000}),
    "nul_notes": lambda n: _mutated(n, ("exception", "notes"), "before\x00after"),
    "extra_key": lambda n: _mutated(n, ("exception", "refund_usd"), 5000),
    "unknown_tenant": lambda n: _dumps(valid_line(n, tenant="ghost-3pl")),
    "bad_tenant_name": lambda n: _dumps(valid_line(n, tenant="DROP TABLE tenants;")),
    "invalid_utf8": lambda n: _dumps(valid_line(n)).replace(b"Parcel", b"Parc\xff\xfeel"),
    "truncated": lambda n: _dumps(valid_line(n))[:57],
    "not_an_object": lambda n: b"[1, 2, 3]",
    "bare_string": lambda n: b'"hello"',
    "trailing_garbage": lambda n: _dumps(valid_line(n)) + b" }",
}


def _no_newlines(raw: bytes) -> bytes:
    """One physical line that is not blank (blank lines are skipped, not reported)."""
    return b"#" + raw.replace(b"\n", b" ").replace(b"\r", b" ")


# The megabyte kinds are slow to write a hundred times over: they have their own test below.
HUGE = {"huge_notes", "huge_line"}
line_kind = st.sampled_from(["valid", "duplicate", *(k for k in BAD_KINDS if k not in HUGE)])
random_line = st.one_of(
    st.binary(max_size=200).map(_no_newlines),
    st.text(max_size=200).map(lambda t: _no_newlines(t.encode("utf-8", "surrogatepass"))),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=10,
    ).map(lambda v: _dumps(v).replace(b"\n", b" ") or b"null"),
)


def _empty(factory) -> None:
    tables = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))
    with factory.begin() as s:
        s.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        get_or_create(s, TENANT)


def _build(kinds: list[str], randoms: list[bytes]) -> tuple[list[bytes], set[int]]:
    """The file's lines and the 1-based numbers of the lines that must be accepted."""
    lines, good = [], set()
    for n, kind in enumerate(kinds, start=1):
        if kind == "valid":
            lines.append(_dumps(valid_line(n)))
            good.add(n)
        elif kind == "duplicate":
            lines.append(_dumps(valid_line(min(good))) if good else b"{}")
        else:
            lines.append(BAD_KINDS[kind](n))
    return [*lines, *randoms], good


def _counts(factory) -> tuple[int, int, int]:
    with factory() as s:
        return s.execute(
            text(
                "SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM exception_records),"
                " (SELECT count(*) FROM orders o WHERE NOT EXISTS"
                "   (SELECT 1 FROM exception_records r WHERE r.order_id = o.id))"
            )
        ).one()


@FUZZ
@given(
    kinds=st.lists(line_kind, min_size=1, max_size=25), randoms=st.lists(random_line, max_size=5)
)
def test_each_line_is_accepted_whole_or_rejected_with_a_reason(factory, tmp_path, kinds, randoms):
    _empty(factory)
    lines, good = _build(kinds, randoms)
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    report = ingest.ingest_file(factory, path)

    rejected = dict(report.rejected)
    assert report.loaded == len(good)
    assert set(rejected) == set(range(1, len(lines) + 1)) - good
    assert all(isinstance(reason, str) and reason.strip() for reason in rejected.values())
    orders, records, orphans = _counts(factory)
    assert orders == records == len(good) and orphans == 0


@FUZZ
@given(raw=st.lists(st.binary(max_size=300), max_size=20))
def test_arbitrary_bytes_never_crash_the_load(factory, tmp_path, raw):
    _empty(factory)
    path = tmp_path / "bytes.jsonl"
    path.write_bytes(b"\n".join(raw))

    report = ingest.ingest_file(factory, path)

    assert report.loaded == 0
    orders, records, orphans = _counts(factory)
    assert orders == records == orphans == 0


def test_each_bad_kind_gets_a_specific_reason(factory, tmp_path):
    _empty(factory)
    kinds = list(BAD_KINDS)
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(BAD_KINDS[k](n) for n, k in enumerate(kinds, start=1)))

    reasons = dict(ingest.ingest_file(factory, path).rejected)

    expected = {
        "missing_tenant": "tenant: Field required",
        "severity_int": "exception.severity",
        "huge_notes": "exception.notes",
        "huge_line": "byte limit",
        "nul_notes": "NUL",
        "extra_key": "exception.refund_usd",
        "unknown_tenant": "unknown tenant 'ghost-3pl'",
        "bad_tenant_name": "bad tenant name",
        "invalid_utf8": "invalid UTF-8",
    }
    for kind, fragment in expected.items():
        assert fragment in reasons[kinds.index(kind) + 1], (kind, reasons[kinds.index(kind) + 1])
    assert len(reasons) == len(kinds)


def test_a_bad_line_in_the_middle_of_a_big_batch_costs_only_itself(factory, tmp_path):
    _empty(factory)
    lines = [_dumps(valid_line(n)) for n in range(1, 1201)]
    lines[700] = BAD_KINDS["huge_notes"](701)
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"\n".join(lines))

    report = ingest.ingest_file(factory, path)

    assert report.loaded == 1199 and [n for n, _ in report.rejected] == [701]
    assert _counts(factory) == (1199, 1199, 0)


def test_the_cli_prints_line_numbers_and_reasons(factory, tmp_path, capsys, monkeypatch):
    _empty(factory)
    monkeypatch.setenv("DATABASE_URL", str(factory().get_bind().url.render_as_string(False)))
    get_settings.cache_clear()
    path = Path(tmp_path / "cli.jsonl")
    good = copy.deepcopy(valid_line(1))
    path.write_bytes(b"\n".join([_dumps(good), b"{oops", BAD_KINDS["unknown_tenant"](3)]))

    try:
        code = cli.main(["ingest", str(path)])
    finally:
        get_settings.cache_clear()

    out = capsys.readouterr()
    assert code == 1
    assert "line 2: rejected:" in out.err and "line 3: rejected: unknown tenant" in out.err
    assert "created 1, updated 0 (reopened 0), unchanged 0, rejected 2" in out.out
