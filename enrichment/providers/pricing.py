"""The one price table: USD per million tokens, per model. Cost is computed here only.

Prices are Anthropic's published list prices (anthropic.com/pricing) at the time of writing;
update this table, and nothing else, when they change. Cache writes are 5-minute ephemeral
writes (1.25x the input price), cache reads are 0.1x the input price. A Message Batches
request costs half of all of it (BATCH_FACTOR).
"""

from __future__ import annotations

from dataclasses import dataclass

CACHE_WRITE_FACTOR = 1.25
CACHE_READ_FACTOR = 0.1
BATCH_FACTOR = 0.5
_PER_TOKEN = 1 / 1_000_000


@dataclass(frozen=True)
class Price:
    """List prices in USD per million tokens."""

    input_usd_per_mtok: float
    output_usd_per_mtok: float


# Keys are model-name prefixes: "claude-haiku-4-5-20251001" matches "claude-haiku-4-5".
# The longest matching prefix wins, so "claude-sonnet-4-5" is not priced as "claude-sonnet-4".
PRICES: dict[str, Price] = {
    "claude-haiku-4-5": Price(1.0, 5.0),
    "claude-sonnet-4-6": Price(3.0, 15.0),
    "claude-sonnet-4-5": Price(3.0, 15.0),
    "claude-sonnet-4": Price(3.0, 15.0),
    "claude-opus-4-6": Price(5.0, 25.0),
    "claude-opus-4-5": Price(5.0, 25.0),
    "claude-opus-4-1": Price(15.0, 75.0),
    "claude-opus-4": Price(15.0, 75.0),
    "claude-3-5-haiku": Price(0.8, 4.0),
}


class UnknownModelPrice(LookupError):
    """The model has no row in PRICES: add one before using the model."""


def price_for(model: str) -> Price:
    """The price row whose key is the longest prefix of `model`; raises UnknownModelPrice."""
    matches = [key for key in PRICES if model.startswith(key)]
    if not matches:
        raise UnknownModelPrice(f"no price for model {model!r}: add it to enrichment/pricing.py")
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
    input_equivalent = (
        input_tokens
        + cache_write_tokens * CACHE_WRITE_FACTOR
        + cache_read_tokens * CACHE_READ_FACTOR
    )
    total = input_equivalent * price.input_usd_per_mtok + output_tokens * price.output_usd_per_mtok
    return round(total * _PER_TOKEN * (BATCH_FACTOR if batch else 1.0), 8)
