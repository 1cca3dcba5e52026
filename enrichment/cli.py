"""The `enrichment` command. Each subcommand is a thin call into its module."""

from __future__ import annotations

import argparse
import sys

from enrichment.core.settings import ConfigurationError, get_settings


def _migrate(args: argparse.Namespace) -> int:
    from enrichment.core import db

    db.migrate(get_settings().database_url)
    print("database migrated to head")
    return 0


def _tenant_add(args: argparse.Namespace) -> int:
    from enrichment.core import db, tenants

    with db.session_factory(get_settings().database_url).begin() as session:
        tenant, api_key = tenants.create_tenant(
            session, args.name, confidence_threshold=args.threshold
        )
    print(f"tenant {tenant.name} created; API key (shown once): {api_key}")
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
    print(f"loaded {report.loaded} lines, rejected {len(report.rejected)}")
    return 0 if not report.rejected else 1


def _demo(args: argparse.Namespace) -> int:
    from enrichment.tooling import demo

    return demo.run(records=args.records, tenant=args.tenant, timeout_s=args.timeout_s)


def _fake_anthropic(args: argparse.Namespace) -> int:
    from enrichment.tooling import fake_anthropic

    fake_anthropic.serve(
        host=args.host, port=args.port, faults=args.faults, latency_s=args.latency_s, seed=args.seed
    )
    return 0


def _status(args: argparse.Namespace) -> int:
    from enrichment.monitoring import report_cli

    return report_cli.status(args.tenant)


def _report(args: argparse.Namespace) -> int:
    from enrichment.monitoring import report_cli

    return report_cli.report(args.tenant)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="enrichment", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("migrate", help="alembic upgrade head on DATABASE_URL").set_defaults(
        func=_migrate
    )

    p = sub.add_parser("tenant-add", help="create a tenant and print its API key")
    p.add_argument("name")
    p.add_argument(
        "--threshold", type=float, help="confidence threshold (ENRICHMENT_CONFIDENCE_THRESHOLD)"
    )
    p.set_defaults(func=_tenant_add)

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
    p.set_defaults(func=_fake_anthropic)

    p = sub.add_parser("status", help="tenant health (exit 0 ok, 1 warning, 2 critical, 3 unknown)")
    p.add_argument("tenant")
    p.set_defaults(func=_status)
    p = sub.add_parser("report", help="a tenant's enrichment report in the terminal")
    p.add_argument("tenant")
    p.set_defaults(func=_report)

    for name, (_module, text) in PASSTHROUGH.items():
        sub.add_parser(name, help=f"{text} (see 'enrichment {name} --help')")
    return parser


# Subcommands with many options of their own: their module's main(argv) parses them.
PASSTHROUGH = {
    "eval": ("evaluate", "accuracy, macro-F1 and calibration of a provider on labelled data"),
    "drill": ("drill", "the fault drill on local Redis and PostgreSQL (make drill)"),
    "bench": ("bench", "the benchmarks on local Redis and PostgreSQL (make bench)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in PASSTHROUGH:
        from importlib import import_module

        return import_module(f"enrichment.tooling.{PASSTHROUGH[argv[0]][0]}").main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigurationError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
