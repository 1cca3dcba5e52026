"""`enrichment webhook`: a tenant's webhook, its signing secret, a test event, its delivery log.

    enrichment webhook TENANT URL [--new-secret]   set it; the secret stays unless asked
    enrichment webhook TENANT --new-secret          rotate the secret, same URL
    enrichment webhook TENANT --off                 remove it (events wait for the pull route)
    enrichment webhook test TENANT                  POST a signed webhook.test now
    enrichment webhook log TENANT [--limit N]       the newest delivery attempts

A rotation keeps the old secret signing beside the new one for
ENRICHMENT_WEBHOOK_SECRET_OVERLAP_S (both signatures in every POST), so the receiver can
switch without one event refused. Every change writes its audit row (tenant.webhook_changed,
naming the host, never the URL or a secret).
"""

from __future__ import annotations

import argparse
from urllib.parse import urlsplit

from enrichment.core import audit, db, delivery_log, tenants
from enrichment.core.settings import Settings, get_settings
from enrichment.core.text import printable

VERBS = ("test", "log")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "webhook",
        help="set or remove a tenant's webhook, rotate its secret, test it, read its log",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("tenant", help="the tenant (or `test` / `log`, then the tenant)")
    p.add_argument("url", nargs="?", help="https URL (or the tenant after test / log)")
    p.add_argument("--off", action="store_true", help="remove the webhook")
    p.add_argument(
        "--new-secret", action="store_true", help="rotate the signing secret (with an overlap)"
    )
    p.add_argument("--limit", type=_positive, default=50, help="log: at most this many (500)")
    p.add_argument("--json", action="store_true", help="log: one JSON object a line")
    p.set_defaults(func=_dispatch)


def _positive(raw: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number of 1 or more")
    return int(raw)


def _dispatch(args: argparse.Namespace) -> int:
    # `webhook test acme` is the verb; `webhook test https://...` sets tenant "test"'s URL.
    if args.tenant in VERBS and args.url and "://" not in args.url:
        return _test(args.url) if args.tenant == "test" else _log(args.url, args)
    return _set(args)


def _set(args: argparse.Namespace) -> int:
    from enrichment.cli import UserError
    from enrichment.delivery import webhooks

    if args.off and (args.url or args.new_secret):
        raise UserError("--off takes no URL and no --new-secret")
    if not (args.off or args.url or args.new_secret):
        raise UserError("give either a URL or --off (or --new-secret to rotate the secret)")
    settings = get_settings()
    with db.session_factory(settings.database_url).begin() as session:
        tenant = tenants.require(session, args.tenant)
        url = None if args.off else (args.url or tenant.webhook_url)
        if url is None and not args.off:
            raise UserError(f"tenant {args.tenant} has no webhook: give its URL")
        before = tenant.webhook_secret
        secret = webhooks.configure(tenant, url, settings.webhooks, rotate=args.new_secret)
        change = "off" if secret is None else _secret_change(before, secret)
        host = None if secret is None else urlsplit(tenant.webhook_url or "").hostname
        audit.record(
            session, tenant.id, audit.cli_actor(), audit.WEBHOOK_CHANGED, host or "off",
            secret=change,
        )  # fmt: skip
        print(_set_line(args.tenant, change, secret, tenant.webhook_previous_until, settings))
    return 0


def _secret_change(before: str | None, after: str) -> str:
    if before == after:
        return "kept"
    return "rotated" if before else "new"


def _set_line(tenant: str, change: str, secret, until, settings: Settings) -> str:
    if change == "off":
        return f"tenant {tenant}: webhook removed; events wait for the pull route"
    if change == "kept":
        return (
            f"tenant {tenant}: webhook set; it keeps its signing secret "
            "(add --new-secret to rotate it)"
        )
    line = f"tenant {tenant}: webhook set; signing secret (shown once): {secret}"
    if change == "rotated" and until is not None:
        hours = settings.webhooks.secret_overlap_s / 3600
        line += (
            f"\nthe old secret also signs every event until {until:%Y-%m-%d %H:%M} UTC "
            f"({hours:g} h, ENRICHMENT_WEBHOOK_SECRET_OVERLAP_S): switch the receiver before then"
        )
    elif change == "rotated":
        line += "\nthe old secret no longer signs (ENRICHMENT_WEBHOOK_SECRET_OVERLAP_S is 0)"
    return line


def _test(tenant_name: str) -> int:
    from enrichment.delivery import post, probe

    settings = get_settings()
    with db.session_factory(settings.database_url).begin() as session:
        tenant = tenants.require(session, tenant_name)
        answer = probe.send_test(session, tenant, settings.webhooks)
    took = "" if answer.duration_s is None else f" in {answer.duration_s * 1000:.0f} ms"
    if answer.status is None:
        print(f"tenant {tenant_name}: webhook.test got no answer{took}: {answer.error}")
    else:
        text = printable(answer.first_line) or "(empty body)"
        print(f"tenant {tenant_name}: webhook.test answered HTTP {answer.status}{took}: {text}")
    return 0 if answer.kind == post.DELIVERED else 1


def _log(tenant_name: str, args: argparse.Namespace) -> int:
    with db.session_factory(get_settings().database_url).begin() as session:
        tenant = tenants.require(session, tenant_name)
        items = delivery_log.recent(session, tenant.id, limit=args.limit)
    if args.json:
        for item in items:
            print(item.model_dump_json())
        return 0
    if not items:
        print(f"tenant {tenant_name}: no delivery attempts yet")
    for i in items:
        event = "-" if i.event_id is None else f"evt_{i.event_id}"
        answer = i.error or f"HTTP {i.status_code}"
        took = "" if i.duration_ms is None else f"{i.duration_ms} ms"
        print(f"{i.at:%Y-%m-%d %H:%M:%S}  {event:>12}  {i.event_type:<18} {i.outcome:<9} "
              f"{answer:<28} {took}")  # fmt: skip
    return 0
