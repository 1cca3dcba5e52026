"""Records in over the API: one body of items, validated and written like file lines.

The body is `{"items": [...]}` with 1 to MAX_ITEMS items, each in the ingest line format;
the tenant comes from the route, so an item may leave `tenant` out (if it names one, it must
be the route's). Each item is validated by `lines` and written by `write`, exactly as a file
line is: same limits, same messages, all or nothing per item. One transaction per body.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import structlog
from sqlalchemy.orm import Session, sessionmaker

from enrichment.core.settings import RecordLimits, get_settings
from enrichment.ingestion.lines import Good, LineError, Seen, external_id_of, parse_item
from enrichment.ingestion.plan import REJECTED, ItemResult
from enrichment.ingestion.write import write_chunk

log = structlog.get_logger(__name__)

# A body over this is refused before it is parsed (bytes); MAX_ITEMS full-size records fit.
MAX_BODY_BYTES = 10_000_000
MAX_ITEMS = 1_000


class BodyError(ValueError):
    """The body as a whole is not `{"items": [...]}` with 1 to MAX_ITEMS items."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_body(raw: bytes) -> list[Any]:
    """The body's items, still raw JSON values; BodyError with one line when malformed."""
    try:
        body = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise BodyError("body is not valid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BodyError(f"body is not valid JSON: {str(exc).splitlines()[0][:200]}") from None
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        raise BodyError('body must be a JSON object {"items": [...]}')
    if extra := sorted(set(body) - {"items"}):
        raise BodyError(f"unknown key(s) in body: {', '.join(map(repr, extra))[:200]}")
    count = len(body["items"])
    if not 1 <= count <= MAX_ITEMS:
        raise BodyError(f"items has {count} entries; send 1 to {MAX_ITEMS}")
    return body["items"]


def ingest_items(
    factory: sessionmaker[Session],
    tenant_id: int,
    tenant: str,
    items: list[Any],
    *,
    limits: RecordLimits | None = None,
) -> list[ItemResult]:
    """Validate and write `items` for the tenant; one result per item, in order (`pos` is
    the 0-based index). limits: the record's size limits (default: the settings')."""
    results, goods, seen = [], [], Seen("item")
    limits = limits or get_settings().record_limits
    for index, item in enumerate(items):
        try:
            good = Good(index, parse_item(item, tenant, limits=limits), tenant_id)
            seen.check(good)
            goods.append(good)
        except LineError as exc:
            ext = external_id_of(item)
            results.append(ItemResult(index, REJECTED, ext, exc.field, str(exc)))
    results.extend(write_chunk(factory, goods))
    results.sort(key=lambda r: r.pos)
    log.info("ingest.items", tenant=tenant, **Counter(r.result for r in results))
    return results
