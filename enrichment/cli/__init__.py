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

    db.migrate(get_settings().database_url)
    print("database migrated to head")
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

    out = generate.write_jsonl(args.out, tenant=args.tenant, count=args.count, seed=args.seed)
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


def _webhook(args: argparse.Namespace) -> int:
    from urllib.parse import urlsplit

    from enrichment.core import audit, db, tenants
    from enrichment.delivery import webhooks

    settings = get_settings()
    if args.off == bool(args.url):
        raise UserError("give either a URL or --off")
    with db.session_factory(settings.database_url).begin() as session:
        tenant = tenants.require(session, args.tenant)
        secret = webhooks.configure(tenant, None if args.off else args.url, settings.webhooks)
        host = None if secret is None else urlsplit(tenant.webhook_url or "").hostname
        audit.record(session, tenant.id, audit.cli_actor(), audit.WEBHOOK_CHANGED, host or "off")
    if secret is None:
        print(f"tenant {args.tenant}: webhook removed; events wait for the pull route")
    else:
        print(f"tenant {args.tenant}: webhook set; signing secret (shown once): {secret}")
    return 0


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
    from enrichment.cli import people

    parser = argparse.ArgumentParser(prog="enrichment", description=__doc__)
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

    p = sub.add_parser("generate", help="write a realistic JSONL backlog for a tenant")
    p.add_argument("--tenant", default="demo-3pl")
    p.add_argument("--count", type=int, default=500)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", default="var/demo.jsonl")
    p.set_defaults(func=_generate)

    p = sub.add_parser("ingest", help="load orders and exception records from a JSONL file")
    p.add_argument("file")
    p.add_argument("--create-tenants", action="store_true", help="create unknown tenants")
    p.set_defaults(func=_ingest)

    p = sub.add_parser("show", help="one record's story: fields, attempts, actions, events")
    p.add_argument("tenant")
    p.add_argument("external_id")
    p.set_defaults(func=_show)

    p = sub.add_parser(
        "webhook", help="set (https) or remove a tenant's webhook; prints a new signing secret"
    )
    p.add_argument("tenant")
    p.add_argument("url", nargs="?")
    p.add_argument("--off", action="store_true", help="remove the webhook")
    p.set_defaults(func=_webhook)

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


def _database_problem(exc: Exception) -> str:
    """One line for a database error: not migrated, unreachable, or an unparsable URL."""
    from sqlalchemy.engine import make_url

    text = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
    if "no such table" in text or ("relation" in text and "does not exist" in text):
        return "the database has no tables yet: run `enrichment migrate` first"
    if "no such column" in text or ("column" in text and "does not exist" in text):
        return "the database is from an older version: run `enrichment migrate` to upgrade it"
    try:
        where = make_url(get_settings().database_url).render_as_string(hide_password=True)
    except Exception:
        return "DATABASE_URL could not be parsed; e.g. postgresql+psycopg://user@host:5432/db"
    return f"cannot use the database {where}: {text}"


def _explain(exc: Exception) -> str | None:
    """The one-line message for a user's mistake, or None for a bug (which keeps its trace)."""
    from sqlalchemy.exc import ArgumentError, DBAPIError

    from enrichment.core.tenants import UnknownTenant

    if isinstance(exc, ConfigurationError):
        return f"configuration error: {exc}"
    if isinstance(exc, UserError | UnknownTenant):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return f"no such file: {exc.filename}"
    if isinstance(exc, ArgumentError | DBAPIError):
        return _database_problem(exc)
    if isinstance(exc, ValueError):
        return str(exc)
    return None


def _guarded(call: Callable[[], int]) -> int:
    try:
        return call()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        message = _explain(exc)
        if message is None:
            raise
        print(f"enrichment: {message}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in PASSTHROUGH:
        from importlib import import_module

        module = f"enrichment.tooling.{PASSTHROUGH[argv[0]][0]}"
        return _guarded(lambda: import_module(module).main(argv[1:]))
    args = build_parser().parse_args(argv)
    return _guarded(lambda: args.func(args))
