"""Archives: gzip JSON Lines per tenant and day with a manifest, and `enrichment archive`.

Given a-3pl's attempts and outbox events archived (two parts of attempts, one of events),
when they are deleted and `enrichment archive restore` runs, then the same rows are back
(a second restore inserts nothing); a part whose bytes changed is refused in one line and
nothing is restored; a missing archive, an unknown tenant and no directory are one line.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    Table,
    Uuid,
    delete,
    select,
)

from enrichment.core import tenants
from enrichment.core.models import EnrichmentAttempt, OutboxEvent
from enrichment.core.settings import get_settings
from enrichment.history import archive, restore
from tests.history_world import AT, UMA, ZOE, add_history

DAY = AT.date()


def rows_of(s, model, tenant_id: int) -> list[dict]:
    q = select(model.__table__).where(model.tenant_id == tenant_id).order_by(model.id)
    return [dict(r) for r in s.execute(q).mappings()]


@pytest.fixture
def world(factory, tmp_path):
    directory = tmp_path / "archive"
    with factory.begin() as s:
        a, _ = tenants.create_tenant(s, "a-3pl")
        b, _ = tenants.create_tenant(s, "b-3pl")
        add_history(s, a, ZOE, 1)
        add_history(s, a, UMA, 2)
        add_history(s, b, UMA, 3)
        attempts, events = rows_of(s, EnrichmentAttempt, a.id), rows_of(s, OutboxEvent, a.id)
    paths = [
        archive.archive_rows(directory, "a-3pl", "enrichment_attempts", DAY, attempts[:2]),
        archive.archive_rows(directory, "a-3pl", "enrichment_attempts", DAY, attempts[2:]),
        archive.archive_rows(directory, "a-3pl", "outbox_events", DAY, events),
    ]
    return {"a": a.id, "dir": directory, "attempts": attempts, "events": events, "paths": paths}


def delete_history(factory, tenant_id: int) -> None:
    with factory.begin() as s:
        for model in (EnrichmentAttempt, OutboxEvent):
            s.execute(delete(model).where(model.tenant_id == tenant_id))


def test_parts_and_manifest(world):
    folder = archive.day_dir(world["dir"], "a-3pl", DAY)
    assert [p.name for p in world["paths"]] == [
        "enrichment_attempts-00001.jsonl.gz",
        "enrichment_attempts-00002.jsonl.gz",
        "outbox_events-00003.jsonl.gz",
    ]
    first = world["paths"][0].read_bytes()
    archive.archive_rows(world["dir"], "a-3pl", "enrichment_attempts", DAY, world["attempts"])
    assert world["paths"][0].read_bytes() == first  # a new part; the old one as it was
    parts = archive.manifest(world["dir"], "a-3pl", DAY)["parts"]
    assert [(p["table"], p["rows"]) for p in parts] == [
        ("enrichment_attempts", 2), ("enrichment_attempts", 2), ("outbox_events", 2),
        ("enrichment_attempts", 4),
    ]  # fmt: skip
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == sorted(
        [*(p["file"] for p in parts), archive.MANIFEST]
    )


def test_restore_round_trips_into_an_emptied_table(cli, factory, world):
    delete_history(factory, world["a"])

    code, out, err = cli("archive", "restore", "a-3pl", str(DAY), "--dir", str(world["dir"]))

    assert (code, err) == (0, "")
    assert "enrichment_attempts: 4 rows restored, 0 already there" in out
    with factory() as s:
        assert rows_of(s, EnrichmentAttempt, world["a"]) == world["attempts"]
        assert rows_of(s, OutboxEvent, world["a"]) == world["events"]
    code, out, _ = cli("archive", "restore", "a-3pl", str(DAY), "--dir", str(world["dir"]))
    assert code == 0 and "enrichment_attempts: 0 rows restored, 4 already there" in out


def test_restore_one_table_or_to_a_file(cli, factory, world, tmp_path):
    delete_history(factory, world["a"])
    argv = ("archive", "restore", "a-3pl", str(DAY), "--dir", str(world["dir"]))
    code, out, _ = cli(*argv, "--table", "outbox_events", "--out", "-")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and {line["table"] for line in lines} == {"outbox_events"}
    assert [line["row"]["id"] for line in lines] == [e["id"] for e in world["events"]]
    with factory() as s:
        assert rows_of(s, OutboxEvent, world["a"]) == []  # --out writes nothing to the database


def test_a_corrupted_part_is_refused_in_one_line(cli, factory, world):
    delete_history(factory, world["a"])
    part = world["paths"][1]
    data = bytearray(part.read_bytes())
    data[-5] ^= 0xFF
    part.write_bytes(bytes(data))

    code, out, err = cli("archive", "restore", "a-3pl", str(DAY), "--dir", str(world["dir"]))

    assert code == 64 and err.count("\n") == 1
    assert "enrichment_attempts-00002.jsonl.gz is corrupted" in err
    with factory() as s:
        assert rows_of(s, EnrichmentAttempt, world["a"]) == []  # not even the good parts


def test_mistakes_are_one_line(cli, world, monkeypatch):
    where = ("--dir", str(world["dir"]))
    code, _, err = cli("archive", "restore", "a-3pl", "2020-01-01", *where)
    assert code == 64 and "no archive for a-3pl on 2020-01-01" in err and err.count("\n") == 1
    code, _, err = cli("archive", "restore", "zz-3pl", str(DAY), *where)
    assert code == 64 and "zz-3pl" in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as usage:  # argparse's usage error, exit 64
        cli("archive", "restore", "a-3pl", "yesterday", *where)
    assert usage.value.code == 64
    monkeypatch.delenv("ENRICHMENT_ARCHIVE_DIR", raising=False)
    get_settings.cache_clear()
    code, _, err = cli("archive", "list", "a-3pl")
    assert code == 78 and "ENRICHMENT_ARCHIVE_DIR is not set" in err


def test_list_shows_days_tables_and_rows(cli, world, monkeypatch):
    monkeypatch.setenv("ENRICHMENT_ARCHIVE_DIR", str(world["dir"]))
    get_settings.cache_clear()
    code, out, _ = cli("archive", "list", "a-3pl")
    assert code == 0
    assert out == (
        f"{DAY}  enrichment_attempts 4 rows in 2 parts, outbox_events 2 rows in 1 parts\n"
    )


def test_every_kind_of_value_round_trips():
    table = Table(
        "kinds", MetaData(), Column("id", Integer, primary_key=True),
        Column("at", DateTime(timezone=True)), Column("day", Date), Column("amount", Numeric),
        Column("blob", LargeBinary), Column("key", Uuid),
    )  # fmt: skip
    row = {"id": 1, "at": datetime(2026, 12, 1, 8, 30, tzinfo=UTC), "day": date(2026, 12, 1),
           "amount": Decimal("12.50"), "blob": b"\x00\xff", "key": uuid.uuid4()}  # fmt: skip
    assert restore.typed_row(table, archive.decode(archive.encode([row]))[0]) == row


def test_tenant_names_stay_inside_the_directory(tmp_path):
    for name in ("..", "../etc", "a/b", ".hidden", ""):
        assert tmp_path in archive.tenant_dir(tmp_path, name).parents
        assert "/" not in archive.safe_name(name) and not archive.safe_name(name).startswith(".")


def test_a_row_the_database_refuses_is_one_line(cli, factory, world):
    orphan = {**world["attempts"][0], "id": 999_999, "record_id": 888_888}
    archive.archive_rows(world["dir"], "a-3pl", "enrichment_attempts", DAY, [orphan])
    code, _, err = cli("archive", "restore", "a-3pl", str(DAY), "--dir", str(world["dir"]))
    assert code == 64 and err.count("\n") == 1
    assert "enrichment_attempts: the database refused an archived row" in err
