"""`enrichment archive list|restore`: what the pruner archived for a tenant, and one day of it
read back (enrichment/history/archive.py and restore.py).

`restore TENANT DAY` checks every part's checksum against the manifest, then inserts the
archived rows that are not in the database (a second restore inserts nothing); `--out FILE`
(`-` for stdout) writes them as JSON Lines instead, one `{"table": ..., "row": ...}` a line,
and writes nothing to the database. The archive directory is ENRICHMENT_ARCHIVE_DIR, or
`--dir`. A missing archive, a corrupted part or an unknown tenant is one line (exit 64).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import nullcontext
from datetime import date
from pathlib import Path

from enrichment.core import db, tenants
from enrichment.core.settings import ConfigurationError, get_settings
from enrichment.history import archive
from enrichment.history import restore as restoring


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("archive", help="list a tenant's archived history, or restore a day of it")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("list", help="the tenant's archived days: parts and rows per table")
    a.add_argument("tenant")
    _dir_option(a)
    a.set_defaults(func=_list)
    a = actions.add_parser(
        "restore", help="insert one day's archived rows that are missing (checksums checked)"
    )
    a.add_argument("tenant")
    a.add_argument("day", type=_day, help="YYYY-MM-DD")
    a.add_argument("--table", help="only this table's parts (e.g. enrichment_attempts)")
    a.add_argument(
        "--out", help="write the rows as JSON Lines to this file ('-': stdout), not the database"
    )
    _dir_option(a)
    a.set_defaults(func=_restore)


def _dir_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", help="the archive directory (default: ENRICHMENT_ARCHIVE_DIR)")


def _day(raw: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a day: use YYYY-MM-DD") from None


def archive_dir(given: str | None) -> Path:
    directory = given or get_settings().archive_dir
    if not directory:
        raise ConfigurationError(
            "ENRICHMENT_ARCHIVE_DIR is not set (nothing is archived); set it, or pass --dir"
        )
    return Path(directory)


def _known_tenant(name: str) -> int:
    with db.session_factory(get_settings().database_url)() as s:
        return tenants.require(s, name).id


def _list(args: argparse.Namespace) -> int:
    directory = archive_dir(args.dir)
    _known_tenant(args.tenant)
    found = archive.days(directory, args.tenant)
    if not found:
        print(f"no archives for {args.tenant} under {directory}")
    for day in found:
        parts = archive.manifest(directory, args.tenant, day)["parts"]
        counts: dict[str, list[int]] = {}
        for p in parts:
            seen = counts.setdefault(p["table"], [0, 0])
            seen[0], seen[1] = seen[0] + 1, seen[1] + p["rows"]
        shown = ", ".join(f"{t} {n} rows in {k} parts" for t, (k, n) in sorted(counts.items()))
        print(f"{day}  {shown or 'no parts'}")
    return 0


def _restore(args: argparse.Namespace) -> int:
    directory = archive_dir(args.dir)
    tenant_id = _known_tenant(args.tenant)
    if not (archive.day_dir(directory, args.tenant, args.day) / archive.MANIFEST).exists():
        raise archive.ArchiveError(f"no archive for {args.tenant} on {args.day} under {directory}")
    rows = restoring.read(directory, args.tenant, args.day, table=args.table)
    if args.out:
        return _write_out(args.out, rows)
    with db.session_factory(get_settings().database_url).begin() as s:
        done = restoring.restore(s, tenant_id, rows)
    for r in done:
        print(f"{r.table}: {r.inserted} rows restored, {r.archived - r.inserted} already there")
    return 0


def _write_out(out: str, rows: dict[str, list[dict]]) -> int:
    try:
        with nullcontext(sys.stdout) if out == "-" else open(out, "w") as f:
            for table, table_rows in rows.items():
                for row in table_rows:
                    f.write(json.dumps({"table": table, "row": row}) + "\n")
            f.flush()
    except BrokenPipeError:  # `| head`: the reader has what it wanted (Python's docs' recipe)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if out != "-":
        print(f"wrote {sum(map(len, rows.values()))} rows to {out}", file=sys.stderr)
    return 0
