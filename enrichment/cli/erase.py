"""`enrichment erase TENANT --order EXTERNAL_ID | --all --yes`: a customer's personal data, or
a whole tenant, gone (enrichment/history/erasure.py and tenant_removal.py).

`--order` scrubs the order and all that refers to it, in the database and the archives under
ENRICHMENT_ARCHIVE_DIR, with an audit row (`order.erased`, by `cli:<os user>`), and prints
the rows scrubbed per table; a second run prints zeros. `--all` deletes every row of the
tenant in every table, and its archives; it needs `--yes`, and prints the rows removed per
table (no audit row can outlive its tenant: the log line `tenant.erased` says it).
"""

from __future__ import annotations

import argparse

import structlog

from enrichment.cli import UserError
from enrichment.core import audit, db, tenants
from enrichment.core.settings import get_settings
from enrichment.history import erasure, tenant_removal

log = structlog.get_logger(__name__)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "erase", help="scrub one order's personal data (--order), or remove a tenant (--all)"
    )
    p.add_argument("tenant")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--order", metavar="EXTERNAL_ID", help="the order's external id")
    which.add_argument("--all", action="store_true", help="remove the tenant and all its data")
    p.add_argument("--yes", action="store_true", help="required with --all: it cannot be undone")
    p.set_defaults(func=_erase)


def _erase(args: argparse.Namespace) -> int:
    if args.all:
        return _erase_tenant(args.tenant, args.yes)
    settings = get_settings()
    with db.session_factory(settings.database_url).begin() as s:
        tenant = tenants.require(s, args.tenant)
        try:
            done = erasure.erase_order(
                s, tenant.id, tenant.name, args.order, archive_dir=settings.archive_dir
            )
        except erasure.UnknownOrder as exc:
            raise UserError(str(exc)) from None
        audit.record(s, tenant.id, audit.cli_actor(), audit.ORDER_ERASED, args.order,
                     **erasure_details(done))  # fmt: skip
    print(f"order {args.order} of {args.tenant}: personal data erased")
    for line in erased_lines(done):
        print(f"  {line}")
    return 0


def erasure_details(done: erasure.Erased) -> dict[str, dict[str, int]]:
    """The audit row's details: rows scrubbed per table (no personal data)."""
    return {"database": done.database, "archives": done.archives}


def erased_lines(done: erasure.Erased) -> list[str]:
    lines = [f"{table}: {n} rows scrubbed" for table, n in done.database.items()]
    lines += [f"archived {table}: {n} rows scrubbed" for table, n in done.archives.items()]
    return lines


def _erase_tenant(name: str, confirmed: bool) -> int:
    if not confirmed:
        raise UserError(
            f"--all deletes every row of tenant {name!r} and its archives, and cannot be"
            " undone: add --yes"
        )
    settings = get_settings()
    with db.session_factory(settings.database_url).begin() as s:
        tenant = tenants.require(s, name)
        removed = tenant_removal.remove_tenant(
            s, tenant.id, tenant.name, archive_dir=settings.archive_dir
        )
    log.info("tenant.erased", tenant=name, actor=audit.cli_actor(), **removed)
    print(f"tenant {name} removed")
    for table, n in removed.items():
        print(f"  {table}: {n} removed")
    return 0
