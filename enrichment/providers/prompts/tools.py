"""The tools every Anthropic request sends: the part of the prompt the model reads first.

One tool per stage for analyze and classify, and one resolve tool per label whose `actions`
items are exactly that label's allow-list (enrichment.core.taxonomy), so the schema offers no
other action; a label that needs a person gets `maxItems: 0`. Every request sends all of them
in a fixed order and tool_choice forces one, so tools + system prompt stay one identical prefix,
cached once for every stage and label. The schemas come from the pydantic models the pipeline
validates with (enrichment.core.schemas); the schema guides the model, the validation decides.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from pydantic import BaseModel

from enrichment.core.schemas import Analysis, Classification, OrderAnalysis, Resolution
from enrichment.core.taxonomy import ALLOWED_ACTIONS, Label

ANALYZE_TOOL = "record_analysis"
CLASSIFY_TOOL = "record_classification"
ORDER_TOOL = "record_order_problems"  # a watched order's analysis (analyze_order)
_RESOLVE_PREFIX = "record_resolution_"

_ANALYZE_DESCRIPTION = (
    "Record what went wrong with the order, before any label is chosen. List the concrete "
    "problems the record shows (an event, a missing event, a gap between two timestamps, a "
    "detail in the notes), each as one short plain sentence that names its evidence, at most "
    "10. Then summarise the exception in two or three sentences. Describe; do not classify."
)
_ORDER_DESCRIPTION = (
    "Record the problems a watched order shows as of the check's time, before anyone reported "
    "one: for each, one taxonomy label, your probability in [0, 1] that it is real and needs "
    "someone now, and its evidence (event types and times, the missing step, the field). An "
    "empty list means the order is healthy."
)
_CLASSIFY_DESCRIPTION = (
    "Record the one taxonomy label that best explains the exception, your probability in "
    "[0, 1] that the label is right, and notes that name the evidence: the event types, "
    "timestamps or note phrases that decided it, and the runner-up label when it was close."
)


def resolve_tool(label: Label) -> str:
    """The resolve tool's name for `label`, e.g. record_resolution_damaged_package."""
    return f"{_RESOLVE_PREFIX}{label.value.lower()}"


def tool_name(stage: str, label: Label | None = None) -> str:
    """The tool a stage must call; resolve needs the record's classified label."""
    if stage == "analyze":
        return ANALYZE_TOOL
    if stage == "classify":
        return CLASSIFY_TOOL
    if stage == "analyze_order":
        return ORDER_TOOL
    if stage == "resolve" and label is not None:
        return resolve_tool(label)
    raise ValueError(f"no tool for stage {stage!r} with label {label!r}")


@cache
def _definitions() -> tuple[dict[str, Any], ...]:
    tools = [
        _tool(ANALYZE_TOOL, _ANALYZE_DESCRIPTION, schema_of(Analysis)),
        _tool(CLASSIFY_TOOL, _CLASSIFY_DESCRIPTION, schema_of(Classification)),
    ]
    tools += [
        _tool(resolve_tool(lb), _resolve_description(lb), _resolve_schema(lb)) for lb in Label
    ]
    tools.append(_tool(ORDER_TOOL, _ORDER_DESCRIPTION, schema_of(OrderAnalysis)))
    return tuple(tools)


def tool_definitions() -> list[dict[str, Any]]:
    """All tools in their fixed order: analyze, classify, then resolve per label (Label order).

    A fresh copy each call: a caller that edits one cannot change what others send."""
    return copy.deepcopy(list(_definitions()))


def _tool(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "description": description, "input_schema": schema}


def _resolve_description(label: Label) -> str:
    allowed = sorted(ALLOWED_ACTIONS[label])
    if not allowed:
        return (
            f"Record the resolution of a record classified {label}. No automated action is "
            f"allowed for {label}: a person resolves it, so set automatable to false, leave "
            "actions empty and say in rationale what the person should look at first."
        )
    return (
        f"Record the resolution of a record classified {label}. Choose only from these "
        f"actions: {', '.join(allowed)}. Set automatable to true only when the chosen actions "
        "resolve the exception without a person; explain the choice in rationale."
    )


def _resolve_schema(label: Label) -> dict[str, Any]:
    """The Resolution schema with `actions` narrowed to the label's allow-list."""
    schema = schema_of(Resolution)
    actions = schema["properties"]["actions"]
    allowed = sorted(a.value for a in ALLOWED_ACTIONS[label])
    if allowed:
        actions["items"] = {"type": "string", "enum": allowed}
        actions["maxItems"] = min(actions.get("maxItems", len(allowed)), len(allowed))
    else:
        # JSON Schema forbids an empty enum; an array that must stay empty says the same.
        actions["items"] = {"type": "string"}
        actions["maxItems"] = 0
    return schema


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its $defs inlined, so the schema needs no resolver."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})
    return _inline_refs(schema, defs)


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    # Enums arrive as {"$ref": "#/$defs/Label"}.
    if isinstance(node, dict):
        ref = node.get("$ref", "")
        if ref.startswith("#/$defs/"):
            return _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline_refs(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node
