"""The fake Anthropic server's token counts and prompt cache (see `fake_anthropic`).

Tokens are about 4 characters each: a text block counts its text, a tool or any other block its
JSON (sorted keys, without cache_control), and a request 8 more for its framing. Caching works
as the API describes it:
- the cacheable prefix is every block up to and including the last one carrying cache_control,
  in the API's order tools -> system -> messages (a top-level cache_control marks the last
  block, as automatic caching does);
- it is cached only from the model's minimum length (MIN_CACHEABLE_TOKENS); below that there
  is no error, both cache counters are 0 and every token is input;
- an entry lives 5 minutes, or 1 hour when that marker has ttl "1h"; a read refreshes it, and
  an expired entry is written again; entries are per model and exact prefix;
- input_tokens excludes the tokens read from or written to the cache.
Each use of the cache is one whole prefix (the API can also read an earlier breakpoint's
prefix and write the rest; the fake writes the whole prefix again then).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Callable
from typing import Any

# The fake's assumption of each model's minimum cacheable prefix (tokens), by model-name prefix:
# the longest matching prefix wins, any other model gets the default. From the prompt-caching
# docs as quoted in anthropic-sdk-python#1194 (Opus 4.6 is 4,096 there, not 1,024); some users
# see 2,048 on Sonnet 4.5/4.6, which this does not model.
MIN_CACHEABLE_TOKENS: dict[str, int] = {
    "claude-haiku-4-5": 4096,
    "claude-opus-4-5": 4096,
    "claude-opus-4-6": 4096,
    "claude-3-haiku": 2048,
    "claude-3-5-haiku": 2048,
}
DEFAULT_MIN_CACHEABLE_TOKENS = 1024
CACHE_TTL_S = {"5m": 300.0, "1h": 3600.0}
FRAMING_TOKENS = 8  # the role and message framing, never part of a cached prefix
_MAX_ENTRIES = 10_000  # past this, expired entries are dropped (a long-running fake)


def estimate_tokens(text: str) -> int:
    """The fake's token count of a text: about 4 characters a token, rounded up."""
    return math.ceil(len(text) / 4)


def min_cacheable_tokens(model: str) -> int:
    """The shortest prefix (tokens) the fake caches for `model` (see MIN_CACHEABLE_TOKENS)."""
    matches = [prefix for prefix in MIN_CACHEABLE_TOKENS if model.startswith(prefix)]
    return MIN_CACHEABLE_TOKENS[max(matches, key=len)] if matches else DEFAULT_MIN_CACHEABLE_TOKENS


def prefix_tokens(body: dict[str, Any]) -> int:
    """Tokens of a request's cacheable prefix (0 without cache_control), whatever its length:
    compare with min_cacheable_tokens(model) to know whether the fake caches it."""
    blocks = _prompt_blocks(body)
    end = _breakpoint(body, blocks)
    return 0 if end is None else sum(map(_block_tokens, blocks[: end + 1]))


def request_tokens(body: dict[str, Any]) -> int:
    """Every input token the fake counts for a request, cached or not."""
    return sum(map(_block_tokens, _prompt_blocks(body))) + FRAMING_TOKENS


def _prompt_blocks(body: dict[str, Any]) -> list[Any]:
    """Every block of a request in the API's prefix order: tools, system, then messages."""
    system = body.get("system") or []
    blocks = [*(body.get("tools") or []), *([system] if isinstance(system, str) else system)]
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        blocks.extend([content] if isinstance(content, str) else content or [])
    return blocks


def _block_tokens(block: Any) -> int:
    if isinstance(block, dict) and block.get("type") == "text":
        return estimate_tokens(str(block.get("text", "")))
    if isinstance(block, dict):  # a tool or a non-text block: its JSON, without the marker
        block = json.dumps({k: v for k, v in block.items() if k != "cache_control"}, sort_keys=True)
    return estimate_tokens(block if isinstance(block, str) else json.dumps(block))


def _breakpoint(body: dict[str, Any], blocks: list[Any]) -> int | None:
    """The index of the last block carrying cache_control, or None."""
    marked = [i for i, b in enumerate(blocks) if isinstance(b, dict) and b.get("cache_control")]
    if isinstance(body.get("cache_control"), dict) and blocks:
        marked.append(len(blocks) - 1)
    return max(marked, default=None)


def _entry(body: dict[str, Any], blocks: list[Any], end: int) -> tuple[str, str]:
    """The cache key of the prefix ending at block `end` (model and blocks), and its TTL."""
    marker = blocks[end].get("cache_control") if isinstance(blocks[end], dict) else None
    ttl = (marker or body.get("cache_control") or {}).get("ttl") or "5m"
    key = json.dumps([body.get("model"), blocks[: end + 1]], sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest(), ttl if ttl in CACHE_TTL_S else "5m"


class PromptCache:
    """The cache of one fake server: prefix key -> expiry time on `clock` (seconds)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._expires_at: dict[str, float] = {}

    def usage(self, body: dict[str, Any], content: list[Any]) -> dict[str, Any]:
        """The `usage` of an answer with `content` to `body`, using the cache as the API does."""
        writes = {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}
        usage: dict[str, Any] = {
            "input_tokens": request_tokens(body),
            "output_tokens": estimate_tokens(json.dumps(content)),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation": writes,
            "service_tier": "standard",
        }
        blocks = _prompt_blocks(body)
        end = _breakpoint(body, blocks)
        cached = 0 if end is None else sum(map(_block_tokens, blocks[: end + 1]))
        if end is None or cached < min_cacheable_tokens(str(body.get("model"))):
            return usage
        key, ttl = _entry(body, blocks, end)
        if self._read(key, CACHE_TTL_S[ttl]):
            usage["cache_read_input_tokens"] = cached
        else:
            usage["cache_creation_input_tokens"] = writes[f"ephemeral_{ttl}_input_tokens"] = cached
        usage["input_tokens"] -= cached
        return usage

    def _read(self, key: str, ttl_s: float) -> bool:
        """Whether `key` was cached and alive; either way it now lives `ttl_s` from now."""
        now = self._clock()
        with self._lock:
            hit = self._expires_at.get(key, -math.inf) > now
            self._expires_at[key] = now + ttl_s
            if len(self._expires_at) > _MAX_ENTRIES:
                self._expires_at = {k: t for k, t in self._expires_at.items() if t > now}
        return hit
