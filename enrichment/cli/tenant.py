"""`enrichment tenant list|show|set|disable|enable`: tenants managed without SQL
(core/tenant_admin.py; the admin API does the same). Every change is written with its audit
row, by `cli:<os user>`. A bad value is refused in one line and nothing is written."""

from __future__ import annotations

import argparse
import json
from typing import Any

from enrichment.core import audit, db, tenant_admin, tenants
from enrichment.core.settings import get_settings


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tenant", help="list tenants, show or set their settings, disable them")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("list", help="every tenant: enabled or not, records and backlog")
    a.set_defaults(func=_list)
    a = actions.add_parser("show", help="a tenant's effective settings (defaults marked)")
    a.add_argument("tenant")
    a.set_defaults(func=_show)
    a = actions.add_parser(
        "set",
        help="set settings: key=value ... (a value is JSON when it parses, else a string;"
        " key=null removes the key)",
    )
    a.add_argument("tenant")
    a.add_argument("pairs", nargs="+", metavar="key=value", type=_pair)
    a.set_defaults(func=_set)
    for name, text in (("disable", _DISABLE_HELP), ("enable", "claim its records again")):
        a = actions.add_parser(name, help=text)
        a.add_argument("tenant")
        a.set_defaults(func=_disable if name == "disable" else _enable)


_DISABLE_HELP = "skip its records in the claim and refuse its API key and reviewers"


def _pair(raw: str) -> tuple[str, Any]:
    """`key=value`: the value as JSON when it parses (2, 0.5, [..], {..}, null), else as is."""
    key, sep, text = raw.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{raw!r} is not key=value, e.g. weight=2")
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    return key.strip(), value


def _factory():
    return db.session_factory(get_settings().database_url)


def _list(args: argparse.Namespace) -> int:
    with _factory()() as s:
        lines = tenant_admin.listing(s)
    if not lines:
        print("no tenants; add one with `enrichment tenant-add NAME`")
    for t in lines:
        state = f"disabled {t.disabled_at:%Y-%m-%d %H:%M} UTC" if t.disabled_at else "enabled"
        counts = "no snapshot yet" if t.records is None else (
            f"{t.records} records, {t.backlog} in backlog"
        )  # fmt: skip
        print(f"{t.name}  {state}  {counts}")
    return 0


def _show(args: argparse.Namespace) -> int:
    with _factory()() as s:
        tenant = tenants.require(s, args.tenant)
        state = "disabled" if tenant.disabled_at else "enabled"
        shown = tenant_admin.effective(tenant)
    print(f"{args.tenant}: {state}")
    width = max(len(e.key) for e in shown)
    for e in shown:
        mark = "  (default)" if e.default else ""
        print(f"  {e.key:<{width}}  {json.dumps(e.value, sort_keys=True)}{mark}")
    return 0


def _set(args: argparse.Namespace) -> int:
    changes = dict(args.pairs)
    with _factory().begin() as s:
        tenant = tenants.require(s, args.tenant)
        changed = tenant_admin.change(
            s, tenant, changes, actor=audit.cli_actor(),
            allow_private=get_settings().webhooks.allow_private,
        )  # fmt: skip
    if not changed:
        print(f"tenant {args.tenant}: nothing changed")
    for key, step in changed.items():
        before, after = (json.dumps(step[k], sort_keys=True) for k in ("from", "to"))
        print(f"tenant {args.tenant}: {key} {before} -> {after}")
    return 0


def _disable(args: argparse.Namespace) -> int:
    return _switch(args.tenant, True)


def _enable(args: argparse.Namespace) -> int:
    return _switch(args.tenant, False)


def _switch(name: str, disabled: bool) -> int:
    with _factory().begin() as s:
        tenant = tenants.require(s, name)
        changed = tenant_admin.set_disabled(s, tenant, disabled, actor=audit.cli_actor())
    word = "disabled" if disabled else "enabled"
    if not changed:
        print(f"tenant {name}: already {word}")
    elif disabled:
        print(f"tenant {name}: disabled; its records wait, its API key and reviewers are refused")
    else:
        print(f"tenant {name}: enabled; the next sweep claims its records again")
    return 0
