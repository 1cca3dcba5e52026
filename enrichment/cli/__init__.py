"""The `enrichment` command. Each subcommand is a thin call into its module.

A user's mistake (a bad argument, a missing file, an unreachable or unmigrated database)
is one line on stderr that says what to do, and a non-zero exit: never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from enrichment.core.settings import ConfigurationError, Settings, get_settings


def _migrate(args: argparse.Namespace) -> int:
    from enrichment.core import db
    from enrichment.history import partitions

    url = get_settings().database_url
    db.migrate(url)
    made = partitions.ensure(db.get_engine(url))  # PostgreSQL: the time partitions ahead
    print("database migrated to head" + (f"; {len(made)} partitions made" if made else ""))
    return 0


def _tenant_add(args: argparse.Namespace) -> int:
    from enrichment.core import db, tenants

    with db.session_factory(get_settings().database_url).begin() as session:
        if tenants.by_name(session, args.name) is not None:
            raise UserError(
                f"tenant {args.name!r} already exists; for a new API key run "
                f"`enrichment tenant-key {args.name} --rotate`"
            )
        tenant, api_key = tenants.create_tenant(
            session, args.name, confidence_threshold=args.threshold
        )
    print(f"tenant {tenant.name} created; API key (shown once): {api_key}")
    return 0


def _tenant_key(args: argparse.Namespace) -> int:
    """A new API key, only with --rotate (keys are stored hashed: one cannot be shown)."""
    from enrichment.core import audit, db, tenants

    if not args.rotate:
        raise UserError(
            "keys are stored hashed and cannot be shown again; add --rotate to print a new "
            "key (the old one stops working at once)"
        )
    with db.session_factory(get_settings().database_url).begin() as session:
        tenant = tenants.require(session, args.tenant)
        key = tenants.rotate_key(tenant)
        audit.record(session, tenant.id, audit.cli_actor(), audit.API_KEY_ROTATED, tenant.name)
    print(f"tenant {args.tenant}: new API key (shown once; the old one no longer works): {key}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from enrichment.tooling import generate

    if args.timelines:
        from enrichment.tooling.generate import timelines

        out = timelines.write_timelines(
            args.out or "var/timeline.jsonl", count=args.count, seed=args.seed
        )
        print(f"wrote the timelines of {args.count} orders to {out}")
        return 0
    out = args.out or "var/demo.jsonl"
    out = generate.write_jsonl(out, tenant=args.tenant, count=args.count, seed=args.seed)
    print(f"wrote {args.count} records for {args.tenant} to {out}")
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from enrichment.core import db
    from enrichment.ingestion import ingest

    factory = db.session_factory(get_settings().database_url)
    report = ingest.ingest_file(factory, args.file, create_tenants=args.create_tenants)
    for line_no, reason in report.rejected[:50]:
        print(f"line {line_no}: rejected: {reason}", file=sys.stderr)
    print(
        f"created {report.created}, updated {report.updated} (reopened {report.reopened}),"
        f" unchanged {report.unchanged}, rejected {len(report.rejected)}"
    )
    if report.not_reenriched:
        print(
            f"{report.not_reenriched} updated records were already enriched and keep their"
            ' result; add "reenrich": true to their lines to re-enrich them'
        )
    return 0 if not report.rejected else 1


def _show(args: argparse.Namespace) -> int:
    from enrichment.cli import story as story_text

    return story_text.show(args.tenant, args.external_id)


def _demo(args: argparse.Namespace) -> int:
    from enrichment.tooling import demo

    return demo.run(records=args.records, tenant=args.tenant, timeout_s=args.timeout_s)


def _fake_anthropic(args: argparse.Namespace) -> int:
    from enrichment.tooling import fake_anthropic

    fake_anthropic.serve(
        host=args.host,
        port=args.port,
        faults=args.faults,
        latency_s=args.latency_s,
        seed=args.seed,
        batch_delay_s=args.batch_delay_s,
        batch_expire_rate=args.batch_expire_rate,
    )
    return 0


def _status(args: argparse.Namespace) -> int:
    from enrichment.cli import report as report_cli

    return report_cli.status(args.tenant)


def _report(args: argparse.Namespace) -> int:
    from enrichment.cli import report as report_cli

    return report_cli.report(args.tenant)


def _config_docs(args: argparse.Namespace) -> int:
    from enrichment.core import settings_doc

    return settings_doc.main(["--check"] if args.check else [])


def build_parser() -> argparse.ArgumentParser:
    from enrichment.cli import (
        archive,
        erase,
        experiment,
        people,
        prune,
        replay,
        reprocess,
        tenant,
        webhook,
    )

    parser = Parser(prog="enrichment", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("migrate", help="alembic upgrade head on DATABASE_URL").set_defaults(
        func=_migrate
    )

    p = sub.add_parser("tenant-add", help="create a tenant and print its API key")
    p.add_argument("name")
    p.add_argument(
        "--threshold",
        type=_fraction,
        help="confidence threshold in [0, 1] (default: ENRICHMENT_CONFIDENCE_THRESHOLD,"
        f" {Settings.confidence_threshold})",
    )
    p.set_defaults(func=_tenant_add)

    p = sub.add_parser("tenant-key", help="replace a tenant's API key and print the new one")
    p.add_argument("tenant")
    p.add_argument("--rotate", action="store_true", help="required: the old key stops working")
    p.set_defaults(func=_tenant_key)

    people.add_parsers(sub)
    reprocess.add_parsers(sub)
    tenant.add_parsers(sub)
    experiment.add_parsers(sub)
    prune.add_parsers(sub)
    archive.add_parsers(sub)
    erase.add_parsers(sub)
    replay.add_parsers(sub)

    p = sub.add_parser("generate", help="write a realistic JSONL backlog for a tenant")
    p.add_argument("--tenant", default="demo-3pl")
    p.add_argument("--count", type=int, default=500)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", help="var/demo.jsonl, or var/timeline.jsonl with --timelines")
    p.add_argument(
        "--timelines",
        action="store_true",
        help="order timelines for `enrichment replay` instead (--count orders)",
    )
    p.set_defaults(func=_generate)

    p = sub.add_parser("ingest", help="load orders and exception records from a JSONL file")
    p.add_argument("file")
    p.add_argument("--create-tenants", action="store_true", help="create unknown tenants")
    p.set_defaults(func=_ingest)

    p = sub.add_parser("show", help="one record's story: fields, attempts, actions, events")
    p.add_argument("tenant")
    p.add_argument("external_id")
    p.set_defaults(func=_show)

    webhook.add_parsers(sub)

    p = sub.add_parser("demo", help="run the whole fleet on the embedded default")
    p.add_argument("--records", type=int, default=500)
    p.add_argument("--tenant", default="demo-3pl")
    p.add_argument("--timeout-s", type=float, default=170.0)
    p.set_defaults(func=_demo)

    p = sub.add_parser("fake-anthropic", help="serve a fake Messages API on 127.0.0.1")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument(
        "--faults", default="", help="e.g. 'mix=0.3' or '429=0.1,500=0.05,529=0.05,timeout=0.02'"
    )
    p.add_argument("--latency-s", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--batch-delay-s", type=float, default=0.5, help="seconds a Message Batch stays in_progress"
    )
    p.add_argument(
        "--batch-expire-rate",
        type=_fraction,
        default=0.0,
        help="share of Message Batches that end with every request expired, in [0, 1]",
    )
    p.set_defaults(func=_fake_anthropic)

    p = sub.add_parser("status", help="tenant health (exit 0 ok, 1 warning, 2 critical, 3 unknown)")
    p.add_argument("tenant")
    p.set_defaults(func=_status)
    p = sub.add_parser(
        "report", help="a tenant's enrichment report (exit 0 ok, 1 warning, 2 critical, 3 unknown)"
    )
    p.add_argument("tenant")
    p.set_defaults(func=_report)

    p = sub.add_parser("config-docs", help="write docs/configuration.md from the settings")
    p.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    p.set_defaults(func=_config_docs)

    for name, (_module, text) in PASSTHROUGH.items():
        sub.add_parser(name, help=f"{text} (see 'enrichment {name} --help')")
    return parser


# Subcommands with many options of their own: their module's main(argv) parses them.
PASSTHROUGH = {
    "eval": ("evaluate", "accuracy, macro-F1 and calibration of a provider on labelled data"),
    "drill": ("drill", "the fault drill on local Redis and PostgreSQL (make drill)"),
    "bench": ("bench", "the benchmarks on local Redis and PostgreSQL (make bench)"),
}


class UserError(Exception):
    """A mistake the user can fix; the message says how."""


def _fraction(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{raw} is outside [0, 1]")
    return value


# Exit codes (sysexits.h) besides a command's own 0-3 (status and report: ok, warning,
# critical, unknown): so a script tells a critical tenant (2) from a mistyped command.
EX_USAGE = 64  # a bad argument, file, tenant or value: fix the command
EX_UNAVAILABLE = 69  # the database is unreachable or not migrated: fix the service, or migrate
EX_CONFIG = 78  # an environment variable is wrong: fix the configuration


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits EX_USAGE (argparse's own 2 is `critical` here)."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: error: {message}\n")


def _explain(exc: Exception) -> tuple[str, int] | None:
    """The one line for a user's mistake and its exit code, or None for a bug (which keeps
    its trace)."""
    from sqlalchemy.exc import ArgumentError, DBAPIError

    from enrichment.core import readiness
    from enrichment.core.tenants import UnknownTenant

    if isinstance(exc, ConfigurationError):
        return f"configuration error: {exc}", EX_CONFIG
    if isinstance(exc, ArgumentError | DBAPIError):
        return readiness.explain(exc, get_settings().database_url), EX_UNAVAILABLE
    if isinstance(exc, UserError | UnknownTenant | ValueError):
        return str(exc), EX_USAGE
    if isinstance(exc, FileNotFoundError):
        return f"no such file: {exc.filename}", EX_USAGE
    if isinstance(exc, IsADirectoryError):
        return f"{exc.filename} is a folder: give a file", EX_USAGE
    if isinstance(exc, PermissionError):
        return f"not allowed to read {exc.filename}", EX_USAGE
    return None


def _guarded(call: Callable[[], int]) -> int:
    try:
        return call()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        explained = _explain(exc)
        if explained is None:
            raise
        print(f"enrichment: {explained[0]}", file=sys.stderr)
        return explained[1]


def _passthrough(main: Callable[[list[str]], int], argv: list[str]) -> int:
    """A tool that parses its own arguments: its argparse usage error (exit 2) is EX_USAGE."""
    try:
        return main(argv)
    except SystemExit as exc:
        if exc.code == 2:
            return EX_USAGE
        raise


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in PASSTHROUGH:
        from importlib import import_module

        module = f"enrichment.tooling.{PASSTHROUGH[argv[0]][0]}"
        return _guarded(lambda: _passthrough(import_module(module).main, argv[1:]))
    args = build_parser().parse_args(argv)
    return _guarded(lambda: args.func(args))
