"""`enrichment replay FILE --speed N`: a timeline of orders, events and the tenant's own
exceptions fed to the API in time order on an accelerated clock (enrichment/tooling/replay.py
says how time is driven). The API is `--url`; the tenant's key is `--key` or the
ENRICHMENT_API_KEY environment variable (a client's credential, not a fleet setting).

A missing file, a bad line (with its number), a refused key and an unreachable API are one
line each: exit 64 for the first three, 69 for the API.
"""

from __future__ import annotations

import argparse
import os
import sys

import httpx

from enrichment.cli import EX_UNAVAILABLE, UserError

DEFAULT_URL = "http://127.0.0.1:8000"


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="feed a timeline of orders and events to the API in time")
    p.add_argument("file", help="JSONL timeline (enrichment generate --timelines)")
    p.add_argument(
        "--speed", type=_speed, default=3600.0, help="timeline seconds per wall second (3600)"
    )
    p.add_argument("--tenant", default="demo-3pl")
    p.add_argument("--url", default=DEFAULT_URL, help=f"the API's base URL ({DEFAULT_URL})")
    p.add_argument("--key", help="the tenant's API key (default: $ENRICHMENT_API_KEY)")
    p.add_argument("--progress-s", type=float, default=10.0, help="a progress line every N s")
    p.set_defaults(func=_replay)


def _speed(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{raw} must be a number above 0")
    return value


def _replay(args: argparse.Namespace) -> int:
    from enrichment.tooling import replay

    key = args.key or os.environ.get("ENRICHMENT_API_KEY")
    if not key:
        raise UserError("no API key: give --key or set ENRICHMENT_API_KEY (the tenant's key)")
    try:
        steps = replay.read_timeline(args.file)
    except UnicodeDecodeError:
        raise UserError(f"{args.file} is not UTF-8 text: give a JSONL timeline") from None
    if not steps:
        raise UserError(f"{args.file} holds no step: nothing to replay")
    headers = {"Authorization": f"Bearer {key}"}
    say = _say
    try:
        with httpx.Client(base_url=args.url, headers=headers, timeout=30.0) as client:
            result = replay.replay(
                steps, client, args.tenant, speed=args.speed, progress=say,
                progress_every_s=args.progress_s,
            )  # fmt: skip
    except replay.ApiUnreachable as exc:
        print(f"enrichment: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    except replay.ApiRefused as exc:
        raise UserError(str(exc)) from None
    for reason in result.rejected[:20]:
        print(f"rejected: {reason}", file=sys.stderr)
    return 0 if not result.rejected else 1


def _say(line: str) -> None:
    print(line, flush=True)
