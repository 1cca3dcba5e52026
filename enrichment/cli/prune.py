"""`enrichment prune [--dry-run] [--tenant T]`: one pruner pass by hand, to the end (no time
limit), and what it removed (or, with --dry-run, would remove) per table."""

from __future__ import annotations

import argparse

from enrichment.core import db, tenants
from enrichment.core.settings import get_settings
from enrichment.history import pruner


class PruneBusy(ValueError):
    """Another pass holds the pruner's lock (beat's task, or another `enrichment prune`)."""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="remove history past retention now, and say what went")
    p.add_argument("--dry-run", action="store_true", help="count what would go; remove nothing")
    p.add_argument("--tenant", help="one tenant only (default: every tenant)")
    p.set_defaults(func=_prune)


def _prune(args: argparse.Namespace) -> int:
    settings = get_settings()
    sessions = db.session_factory(settings.database_url)
    tenant_id = None
    if args.tenant is not None:
        with sessions() as s:
            tenant_id = tenants.require(s, args.tenant).id
    with db.exclusive(db.get_engine(settings.database_url), pruner.LOCK_KEY) as mine:
        if not mine and not args.dry_run:
            raise PruneBusy("another prune is running (beat's, or a second command): try later")
        report = pruner.prune(
            sessions, settings.retention, tenant_id=tenant_id, dry_run=args.dry_run,
            archive_dir=settings.archive_dir,
        )  # fmt: skip
    print("\n".join(lines(report, archived=bool(settings.archive_dir))))
    return 0


def lines(report: pruner.Report, *, archived: bool = False) -> list[str]:
    """The report as the command prints it: one line per table, then the total."""
    if not report.removed:
        return ["nothing past retention"]
    verb = "would remove" if report.dry_run else "removed"
    out = [f"{verb}{' (archived first)' if archived else ''}:"]
    out += [f"  {table:<22} {n:>12,}" for table, n in sorted(report.removed.items())]
    total = sum(report.removed.values())
    tail = "" if report.dry_run else f" in {report.chunks} chunks"
    return [*out, f"  {'total':<22} {total:>12,}{tail}"]
