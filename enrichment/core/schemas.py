"""Pydantic models for every stage's result: the single schema source for validation,
for the Anthropic tool definitions, and for the fake server's answers."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from enrichment.core.taxonomy import Action, Label


class _Strict(BaseModel):
    # Unknown keys are an invalid answer, not something to ignore.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Analysis(_Strict):
    """What the analyze stage found in the order and its events."""

    problems: list[str] = Field(max_length=10)
    summary: str = Field(max_length=2000)


class Classification(_Strict):
    """The exception's label and how strongly the evidence supports it."""

    label: Label
    # strict: "0.9" (a string) or true (a bool) is an invalid answer, not coerced.
    confidence: float = Field(ge=0.0, le=1.0, strict=True, allow_inf_nan=False)
    notes: str = Field(max_length=2000)


class Resolution(_Strict):
    """Whether automation can resolve it, and which allow-listed actions to record."""

    automatable: bool = Field(strict=True)
    actions: list[Action] = Field(max_length=5)
    rationale: str = Field(max_length=2000)


class OrderProblem(_Strict):
    """One problem the order analysis found: a label, how sure, and what showed it."""

    label: Label
    confidence: float = Field(ge=0.0, le=1.0, strict=True, allow_inf_nan=False)
    evidence: list[str] = Field(max_length=10)


class OrderAnalysis(_Strict):
    """What the order analysis (a watched order's only stage) found; no problem is healthy."""

    problems: list[OrderProblem] = Field(max_length=10)
    summary: str = Field(max_length=2000)
