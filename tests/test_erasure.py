"""Erasure: one customer's personal data out of everything, or a whole tenant gone.

Given tenant a-3pl with Zoe's order and Otto's (each with a record, attempts, events,
deliveries, an action, a review, a shadow answer and an archived copy of its history) and
tenant b-3pl with Uma's, when Zoe's order is erased (CLI or admin API), then none of Zoe's
strings is left in any text or JSON column of any row of a-3pl nor in its archives, while
the counts, labels, states and timestamps stay, Otto's and Uma's data is untouched, and an
audit row says who did it. `erase --all --yes` removes a-3pl from every table (its audit
rows too) and its archives, and leaves b-3pl whole.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from sqlalchemy import JSON, Text, inspect, text
from sqlalchemy.exc import DBAPIError

from enrichment.api import app, deps
from enrichment.core import audit, tenants
from enrichment.core.models import Base, ExceptionRecord, Order
from enrichment.core.settings import get_settings
from enrichment.history import archive, erasure, tenant_removal
from enrichment.history.personal_data import PERSONAL_DATA
from tests.history_world import AT, OTTO, UMA, ZOE, add_history, found, tenant_rows

TOKEN = "operator-token-for-tests"
# Text and JSON columns of the tables erasure touches that hold no personal data, each with
# its reason: with PERSONAL_DATA they must name every such column (a new one is a decision).
NOT_PERSONAL = {
    ("exception_records", "ai_source"): "provider, model and prompt version",
    ("exception_records", "final_actions"): "action names from the allow-list",
    ("reviews", "actions"): "action names from the allow-list",
    ("reviews", "ai_source"): "provider, model and prompt version",
}


@pytest.fixture
def world(factory, tmp_path, monkeypatch):
    monkeypatch.setenv("ENRICHMENT_ARCHIVE_DIR", str(tmp_path / "archive"))
    get_settings.cache_clear()
    with factory.begin() as s:
        a, _ = tenants.create_tenant(s, "a-3pl")
        b, _ = tenants.create_tenant(s, "b-3pl")
        zoe, otto = add_history(s, a, ZOE, 1), add_history(s, a, OTTO, 2)
        uma = add_history(s, b, UMA, 3)
        ids = {"a": a.id, "b": b.id, "zoe": zoe.order_id, "otto": otto.order_id}
        for tenant in (a, b):  # the archive holds a copy of each tenant's history
            for name, rows in tenant_rows(s, tenant.id).items():
                if name in {"orders", "exception_records", "enrichment_attempts",
                            "outbox_events", "webhook_deliveries"}:  # fmt: skip
                    archive.archive_rows(tmp_path / "archive", tenant.name, name, AT.date(), rows)
        orders = {"zoe": zoe, "otto": otto, "uma": uma}
        ids |= {f"{k}_ext": s.get(Order, r.order_id).external_id for k, r in orders.items()}
    yield ids
    get_settings.cache_clear()


def everything(factory, tenant_id: int, directory) -> str:
    """Every row of the tenant (database and archive) as one text to search."""
    with factory() as s:
        rows = tenant_rows(s, tenant_id)
        name = s.get(tenants.Tenant, tenant_id).name
    parts = [json.dumps(rows, default=str)]
    for day in archive.days(directory, name):
        parts.append(json.dumps(archive.read_day(directory, name, day)))
    return "\n".join(parts)


def shape(factory, tenant_id: int) -> dict:
    """What erasure must leave: row counts, labels, states, timestamps, list lengths."""
    with factory() as s:
        rows = tenant_rows(s, tenant_id)
    recs = rows["exception_records"]
    return {
        "counts": {t: len(r) for t, r in rows.items()},
        "records": sorted(
            (r["id"], r["ai_label"], r["ai_confidence"], r["status"], r["final_label"],
             json.dumps(r["enrichment_state"], sort_keys=True), r["updated_at"], r["enriched_at"])
            for r in recs
        ),  # fmt: skip
        "events": sorted((len(o["events"]), len(o["payload"]["line_items"]))
                         for o in rows["orders"]),
        "outbox": sorted((e["type"], e["status"], e["data"]["label"])
                         for e in rows["outbox_events"]),
    }  # fmt: skip


def test_every_personal_column_is_listed_and_exists():
    for table, spec in PERSONAL_DATA.items():
        columns = Base.metadata.tables[table].c
        assert spec.link in columns, (table, spec.link)
        for column in spec.columns:
            assert isinstance(columns[column].type, Text | JSON) or columns[column].type.length
    for table in PERSONAL_DATA:
        for column in Base.metadata.tables[table].columns:
            if isinstance(column.type, Text | JSON):
                listed = column.name in PERSONAL_DATA[table].columns
                assert listed or (table, column.name) in NOT_PERSONAL, (table, column.name)


def test_erase_order_scrubs_everywhere_and_keeps_the_aggregates(cli, factory, world, tmp_path):
    directory = tmp_path / "archive"
    assert found(everything(factory, world["a"], directory), ZOE) == ZOE.strings
    before_a, before_b = shape(factory, world["a"]), everything(factory, world["b"], directory)

    code, out, err = cli("erase", "a-3pl", "--order", world["zoe_ext"])

    assert (code, err) == (0, "")
    assert "exception_records: 1 rows scrubbed" in out
    assert "archived enrichment_attempts: 2 rows scrubbed" in out
    assert found(everything(factory, world["a"], directory), ZOE) == []
    assert found(everything(factory, world["a"], directory), OTTO) == OTTO.strings
    before_a["counts"]["audit_log"] += 1  # the erasure's own row
    assert shape(factory, world["a"]) == before_a
    assert everything(factory, world["b"], directory) == before_b
    with factory() as s:
        order = s.get(Order, world["zoe"])
        assert order.payload["shipping_address"]["country_code"] == "DE"
        assert order.payload["email"] == "[erased]"
        rows = audit.entries(s, world["a"], action=audit.ORDER_ERASED)
    assert [(r.subject, r.details["database"]["orders"]) for r in rows] == [(world["zoe_ext"], 1)]

    code, out, _ = cli("erase", "a-3pl", "--order", world["zoe_ext"])  # again: nothing left
    assert code == 0 and "orders: 0 rows scrubbed" in out and "archived" not in out


def test_erase_refuses_unknown_order_and_tenant_in_one_line(cli, world):
    code, _, err = cli("erase", "a-3pl", "--order", "nope")
    assert code == 64 and err.count("\n") == 1 and "has no order 'nope'" in err
    code, _, err = cli("erase", "zz-3pl", "--order", world["zoe_ext"])
    assert code == 64 and err.count("\n") == 1


def test_erase_all_needs_yes_then_removes_the_tenant_only(cli, factory, world, tmp_path):
    directory = tmp_path / "archive"
    before_b = everything(factory, world["b"], directory)

    code, _, err = cli("erase", "a-3pl", "--all")
    assert code == 64 and "--yes" in err
    with factory() as s:
        assert tenants.by_name(s, "a-3pl") is not None

    code, out, err = cli("erase", "a-3pl", "--all", "--yes")

    assert (code, err) == (0, "")
    assert "audit_log: 2 removed" in out and "exception_records: 2 removed" in out
    with factory() as s:
        assert tenants.by_name(s, "a-3pl") is None
        assert all(rows == [] for rows in tenant_rows(s, world["a"]).values())
    assert archive.days(directory, "a-3pl") == []
    assert everything(factory, world["b"], directory) == before_b
    with factory.begin() as s, pytest.raises(DBAPIError, match="append-only"):
        s.execute(text("DELETE FROM audit_log"))  # outside a removal, still refused


def test_erase_order_on_both_databases(any_factory):
    with any_factory.begin() as s:
        a, _ = tenants.create_tenant(s, "a-3pl")
        zoe = add_history(s, a, ZOE, 1)
        add_history(s, a, OTTO, 2)
        ext = s.get(Order, zoe.order_id).external_id
    with any_factory.begin() as s:
        done = erasure.erase_order(s, a.id, "a-3pl", ext, archive_dir=None)
    assert done.database["enrichment_attempts"] == 2 and done.archives == {}
    with any_factory() as s:
        text_of_all = json.dumps(tenant_rows(s, a.id), default=str)
    assert found(text_of_all, ZOE) == [] and found(text_of_all, OTTO) == OTTO.strings


def test_remove_tenant_on_both_databases_keeps_the_audit_log_append_only(any_factory, tmp_path):
    with any_factory.begin() as s:
        a, _ = tenants.create_tenant(s, "a-3pl")
        b, _ = tenants.create_tenant(s, "b-3pl")
        add_history(s, a, ZOE, 1)
        add_history(s, b, UMA, 2)
    with any_factory.begin() as s:
        removed = tenant_removal.remove_tenant(s, a.id, "a-3pl", archive_dir=None)
    assert removed["audit_log"] == 1 and removed["tenants"] == 1
    with any_factory() as s:
        names = inspect(s.connection()).get_table_names()
        assert "audit_log" in names
        assert s.scalar(text("SELECT count(*) FROM audit_log")) == 1  # b's
        assert s.query(ExceptionRecord).count() == 1
    with any_factory.begin() as s, pytest.raises(DBAPIError, match="append-only"):
        s.execute(text("DELETE FROM audit_log"))


@pytest.fixture
def admin(client, settings, tmp_path):
    app.dependency_overrides[deps.app_settings] = lambda: replace(
        settings, admin_token=TOKEN, archive_dir=str(tmp_path / "archive")
    )
    return client


def test_api_erasure_is_closed_without_an_admin_token(client, world):
    assert (
        client.post(f"/api/admin/tenants/a-3pl/orders/{world['zoe_ext']}/erase").status_code == 403
    )


def test_api_erasure_is_admin_only_and_audited(admin, factory, world, tmp_path):
    path = f"/api/admin/tenants/a-3pl/orders/{world['zoe_ext']}/erase"
    assert admin.post(path).status_code == 401
    assert admin.post(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert found(everything(factory, world["a"], tmp_path / "archive"), ZOE) == ZOE.strings

    resp = admin.post(path, headers={"Authorization": f"Bearer {TOKEN}"})

    assert resp.status_code == 200, resp.text
    assert resp.json()["database"]["reviews"] == 1
    assert resp.json()["archives"]["orders"] == 1
    assert found(everything(factory, world["a"], tmp_path / "archive"), ZOE) == []
    with factory() as s:
        rows = audit.entries(s, world["a"], action=audit.ORDER_ERASED)
    assert [r.actor for r in rows] == [audit.admin_actor(TOKEN)]
    missing = admin.post(
        "/api/admin/tenants/a-3pl/orders/nope/erase", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert missing.status_code == 404
