"""The provider seam: three stage calls that return validated results or raise a typed failure."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

from enrichment.core.experiments import Experiment
from enrichment.core.schemas import Analysis, Classification, OrderAnalysis, Resolution

T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class RecordContext:
    """Everything a stage may read about one record. Providers never touch the database."""

    tenant: str
    record_id: int
    attempt: int
    reason_code: str
    severity: str
    notes: str | None
    order: dict[str, Any]
    events: list[dict[str, Any]]
    analysis: Analysis | None = None
    classification: Classification | None = None
    weight: float = 1.0  # the tenant's share weight for the AI rate limit (> 0)
    tenant_id: int | None = None
    experiment: Experiment | None = None  # the tenant's (core/experiments.py)
    cascade: bool = False  # the tenant's `cascade` setting
    # "order": a watched order (analyze_order, read as of `as_of`); else an exception.
    record_type: str = "exception"
    as_of: datetime | None = None


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    cost_usd: float = 0.0


@dataclass(frozen=True)
class StageCall(Generic[T]):
    """A validated stage result and where it came from."""

    result: T
    provider: str
    model: str | None
    prompt_version: str | None
    usage: Usage = field(default_factory=Usage)
    # Experiments (core/experiments.py): the live variant that answered, how a cascade
    # decided ("local" alone, or "llm"), and the shadows' answers (never acted on).
    variant: str | None = None
    cascade: str | None = None
    shadows: tuple[Shadow, ...] = ()


@dataclass(frozen=True)
class Shadow:
    """One shadow answer to a stage: its variant, its call and how long it took."""

    variant: str
    call: StageCall[Any]
    latency_s: float


class Provider(Protocol):
    """Raises TransientError, InvalidAIOutput, PermanentError or RateLimited (core.errors)."""

    name: str

    def analyze(self, ctx: RecordContext) -> StageCall[Analysis]: ...

    def classify(self, ctx: RecordContext) -> StageCall[Classification]: ...

    def resolve(self, ctx: RecordContext) -> StageCall[Resolution]: ...

    def analyze_order(self, ctx: RecordContext) -> StageCall[OrderAnalysis]:
        """A watched order's analysis (its stage is ANALYZE): the problems, as of ctx.as_of."""
        ...

    def close(self) -> None:
        """Release clients and pools; called once at process shutdown."""
