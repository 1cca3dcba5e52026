"""`enrichment reviewer add|list|revoke` and `enrichment audit`: a tenant's people and what
everyone did (core/reviewers.py, core/audit.py). Every change is written with its audit row,
by `cli:<os user>`."""

from __future__ import annotations

import argparse
import json

from enrichment.core import audit, db, reviewers, tenants
from enrichment.core.settings import get_settings
from enrichment.core.text import printable


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reviewer", help="add, list or revoke a tenant's reviewers")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("add", help="add a reviewer and print their own key (shown once)")
    a.add_argument("tenant")
    a.add_argument("name", help="the name on every decision they make (1-64 characters)")
    a.set_defaults(func=_add)
    a = actions.add_parser("list", help="the tenant's reviewers")
    a.add_argument("tenant")
    a.add_argument("--revoked", action="store_true", help="include revoked reviewers")
    a.set_defaults(func=_list)
    a = actions.add_parser("revoke", help="revoke a reviewer: their key and sessions end at once")
    a.add_argument("tenant")
    a.add_argument("name")
    a.set_defaults(func=_revoke)

    p = sub.add_parser("audit", help="a tenant's audit log: who did what, when (oldest first)")
    p.add_argument("tenant")
    p.add_argument("--after", type=int, default=0, metavar="ID", help="rows after this id")
    p.add_argument("--limit", type=_positive, default=100, help="at most this many (max 500)")
    p.add_argument("--action", help="only this action, e.g. reviewer.revoked")
    p.add_argument("--json", action="store_true", help="one JSON object a line")
    p.set_defaults(func=_audit)


def _positive(raw: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number of 1 or more")
    return int(raw)


def _factory():
    return db.session_factory(get_settings().database_url)


def _add(args: argparse.Namespace) -> int:
    with _factory().begin() as s:
        tenant = tenants.require(s, args.tenant)
        row, key = reviewers.add(s, tenant.id, args.name)
        name = row.name
        audit.record(s, tenant.id, audit.cli_actor(), audit.REVIEWER_ADDED, name)
    print(
        f"tenant {args.tenant}: reviewer {name!r} added; their key for /review/{args.tenant} "
        f"(shown once; hand it to them only): {key}"
    )
    return 0


def _list(args: argparse.Namespace) -> int:
    with _factory()() as s:
        tenant = tenants.require(s, args.tenant)
        people = reviewers.listing(s, tenant.id, revoked=args.revoked)
    if not people:
        print(f"tenant {args.tenant}: no reviewers; add one with `enrichment reviewer add`")
    for r in people:
        revoked = f"  revoked {r.revoked_at:%Y-%m-%d %H:%M} UTC" if r.revoked_at else ""
        print(f"{printable(r.name)}  added {r.created_at:%Y-%m-%d %H:%M} UTC{revoked}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    with _factory().begin() as s:
        tenant = tenants.require(s, args.tenant)
        row = reviewers.revoke(s, tenant.id, args.name)
        audit.record(s, tenant.id, audit.cli_actor(), audit.REVIEWER_REVOKED, row.name)
    print(f"tenant {args.tenant}: reviewer {args.name.strip()!r} revoked; their sessions ended")
    return 0


def _audit(args: argparse.Namespace) -> int:
    with _factory()() as s:
        tenant = tenants.require(s, args.tenant)
        rows = audit.entries(s, tenant.id, after=args.after, limit=args.limit, action=args.action)
    for r in rows:
        if args.json:
            print(json.dumps(r.model_dump(mode="json"), sort_keys=True))
            continue
        details = " ".join(f"{k}={printable(v, 80)}" for k, v in sorted(r.details.items()))
        subject = printable(r.subject, 80) if r.subject else "-"
        line = f"{r.id}  {r.at:%Y-%m-%d %H:%M:%S}Z  {printable(r.actor, 80)}  {r.action}"
        print(f"{line}  {subject}  {details}".rstrip())
    if not rows and not args.json:
        print(f"tenant {args.tenant}: no audit rows after {args.after}")
    return 0
