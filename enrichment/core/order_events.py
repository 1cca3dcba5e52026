"""An order event's parts as every reader takes them: its source's name, its detail as text.

Feeds send events as they are: a WMS, a carrier, a payment gateway or a helpdesk names
itself (`customer_service`, `shopify`), and a detail is a line of text or a JSON object
(`{"gateway": "shopify_payments", "amount": "201.96"}`). Ingestion keeps both as sent (a
source lowercased); readers that want words (the local provider, the review page) take the
detail through `detail_text`, which is bounded whatever the object holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import islice
from typing import Any

# The sources the product knows the meaning of: a carrier's events are scans (timing,
# silent tracking), the others are read by their type and words like any source.
KNOWN_SOURCES = frozenset({"wms", "carrier", "payment", "system"})
SOURCE_RULE = "1 to 32 characters of a-z, 0-9, '_', '.' and '-'"
_SOURCE = re.compile(r"[a-z0-9_.-]{1,32}")
_WORD_SPLIT = re.compile(r"[_.-]+")

DETAIL_TEXT_CHARS = 2000  # the longest text a detail reads as (a string detail's own limit)
_MAX_PARTS = 200  # leaves of an object detail read, and children of one node, at most
_KEY_CHARS = 100  # of one key in a path
_MAX_DEPTH = 16  # levels of an object detail read (ENRICHMENT_RECORD_MAX_DEPTH's default)


def source_name(raw: str) -> str:
    """`raw` as a stored source name (lowercased); ValueError naming the rule if it is not one."""
    name = raw.lower()
    if not _SOURCE.fullmatch(name):
        raise ValueError(f"a source is {SOURCE_RULE}")
    return name


def source_words(source: str) -> str:
    """An unfamiliar source's words ("customer_service" -> "customer service"); "" for a
    known one (its meaning is the product's, not its words')."""
    return "" if source in KNOWN_SOURCES else _WORD_SPLIT.sub(" ", source).strip()


def detail_text(detail: Any, limit: int = DETAIL_TEXT_CHARS) -> str:
    """A detail as one readable line of at most `limit` characters: a string as it is, an
    object as `key: value; nested.key: value` in its own order (lists by index), None as ""."""
    if detail is None:
        return ""
    if not isinstance(detail, dict | list):
        return str(detail)[:limit]
    parts, size = [], 0
    for path, leaf in _leaves(detail):
        part = f"{path}: {leaf}" if path else leaf
        parts.append(part)
        size += len(part) + 2
        if size >= limit or len(parts) >= _MAX_PARTS:
            break
    return "; ".join(parts)[:limit]


def _leaves(value: Any) -> Iterator[tuple[str, str]]:
    """(dotted path, text) for each scalar in `value`, depth first, in order: at most
    _MAX_PARTS children of a node and _MAX_DEPTH levels (deeper is "..."). Iterative, so no
    depth can exhaust the stack, and lazy, so a caller reads only what it keeps."""
    stack: list[tuple[str, Any, int]] = [("", value, 0)]
    while stack:
        path, node, depth = stack.pop()
        if isinstance(node, dict | list) and depth >= _MAX_DEPTH:
            yield path, "..."
        elif isinstance(node, dict | list):
            pairs = node.items() if isinstance(node, dict) else enumerate(node)
            named = ((str(k)[:_KEY_CHARS], v) for k, v in islice(pairs, _MAX_PARTS))
            kids = [(f"{path}.{k}" if path else k, v) for k, v in named]
            stack.extend((p, v, depth + 1) for p, v in reversed(kids))
        else:
            yield path, "" if node is None else str(node)[:DETAIL_TEXT_CHARS]
