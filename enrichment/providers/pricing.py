"""The one price table: USD per million tokens, per model. Cost is computed here only.

Prices are Anthropic's list prices; each row cites where it was read (checked 2026-12 in stored
copies of the docs' model pages, platform.claude.com/docs/en/models/<model>/overview, unless
its comment says otherwise). Update this table, and nothing else, when they change. Cache writes are
5-minute ephemeral writes (1.25x the input price), cache reads are 0.1x the input price, for
every row below. A Message Batches request costs half of all of it (BATCH_FACTOR).

A model whose prompt (input + cache write + cache read tokens) passes its long-context
threshold is billed at the long-context prices for the whole request, output included.
"""

from __future__ import annotations

from dataclasses import dataclass

CACHE_WRITE_FACTOR = 1.25
CACHE_READ_FACTOR = 0.1
BATCH_FACTOR = 0.5
_PER_TOKEN = 1 / 1_000_000


@dataclass(frozen=True)
class LongContext:
    """The prices (USD per million tokens) of a prompt longer than `over_tokens`."""

    over_tokens: int
    input_usd_per_mtok: float
    output_usd_per_mtok: float


@dataclass(frozen=True)
class Price:
    """List prices in USD per million tokens."""

    input_usd_per_mtok: float
    output_usd_per_mtok: float
    long_context: LongContext | None = None


# Keys are model-name prefixes: "claude-haiku-4-5-20251001" matches "claude-haiku-4-5".
# The longest matching prefix wins. No bare family prefix ("claude-opus-4"): it would price
# an unlisted newer model (claude-opus-4-8) at an older model's rate.
PRICES: dict[str, Price] = {
    # models/haiku-5-5/overview: "$0.10 / MTok for prompts up to 100,000 tokens, $0.50 over";
    # output $0.50 / $2.50; 5m cache write $0.125 (= 1.25x); cache read $0.01 (0.1x; the
    # overview excerpt we could read was cut there: the $0.01 is from apidog.com's API guide).
    "claude-haiku-5-5": Price(0.10, 0.50, LongContext(100_000, 0.50, 2.50)),
    # models overview (Haiku 4.5 column, "$1 / input MTok, $5 / output MTok").
    "claude-haiku-4-5": Price(1.0, 5.0),
    # models/sonnet-4-6/overview.
    "claude-sonnet-4-6": Price(3.0, 15.0),
    # Not re-checked (kept from the previous table): SDK 2.17 no longer lists this model.
    "claude-sonnet-4-5": Price(3.0, 15.0),
    # models/opus-4-8/overview.
    "claude-opus-4-8": Price(5.0, 25.0),
    # Not found on an official page: third-party tables quoting anthropic.com/pricing
    # ("Opus 4.5 - 5: $5 / $25"). claude-opus-4-5 is deprecated (SDK: end of life 2027-01-22).
    "claude-opus-4-6": Price(5.0, 25.0),
    "claude-opus-4-5": Price(5.0, 25.0),
    # build-with-claude/batch-processing: batch $7.50 / $37.50, which is half of the list price.
    "claude-opus-4-1": Price(15.0, 75.0),
}


# The shortest prefix (tokens) the API caches; a shorter one marked with cache_control is
# simply not cached (anthropic-sdk-python#1194 quotes the prompt-caching docs: 4,096 for Haiku
# 4.5 and Opus 4.5 / 4.6, 1,024 for Sonnet 4.5 / 4.6 and Opus 4.1). Haiku 5.5's is not in the
# pages we could read: 4,096, the largest any model needs, is assumed until it is.
CACHE_MIN_TOKENS: dict[str, int] = {
    "claude-haiku-5-5": 4096,
    "claude-haiku-4-5": 4096,
    "claude-opus-4-6": 4096,
    "claude-opus-4-5": 4096,
}
DEFAULT_CACHE_MIN_TOKENS = 1024


def cache_min_tokens(model: str) -> int:
    """The model's minimum cacheable prefix in tokens (longest matching prefix, as PRICES)."""
    matches = [key for key in CACHE_MIN_TOKENS if model.startswith(key)]
    return CACHE_MIN_TOKENS[max(matches, key=len)] if matches else DEFAULT_CACHE_MIN_TOKENS


class UnknownModelPrice(LookupError):
    """The model has no row in PRICES: add one before using the model."""


def price_for(model: str) -> Price:
    """The price row whose key is the longest prefix of `model`; raises UnknownModelPrice."""
    matches = [key for key in PRICES if model.startswith(key)]
    if not matches:
        raise UnknownModelPrice(
            f"no price for model {model!r}: add it to enrichment/providers/pricing.py"
        )
    return PRICES[max(matches, key=len)]


def cost_usd(
    model: str,
    *,
    input_tokens: int,
    output_tokens: int,
    cache_write_tokens: int = 0,
    cache_read_tokens: int = 0,
    batch: bool = False,
) -> float:
    """Cost of one call in USD (a batch request: at the batch price). `input_tokens` excludes
    cached tokens, as the API reports it."""
    price = price_for(model)
    in_rate, out_rate = _rates(price, input_tokens + cache_write_tokens + cache_read_tokens)
    input_equivalent = (
        input_tokens
        + cache_write_tokens * CACHE_WRITE_FACTOR
        + cache_read_tokens * CACHE_READ_FACTOR
    )
    total = input_equivalent * in_rate + output_tokens * out_rate
    return round(total * _PER_TOKEN * (BATCH_FACTOR if batch else 1.0), 8)


def _rates(price: Price, prompt_tokens: int) -> tuple[float, float]:
    """(input, output) USD per million tokens for a prompt of `prompt_tokens`."""
    long = price.long_context
    if long is not None and prompt_tokens > long.over_tokens:
        return long.input_usd_per_mtok, long.output_usd_per_mtok
    return price.input_usd_per_mtok, price.output_usd_per_mtok
