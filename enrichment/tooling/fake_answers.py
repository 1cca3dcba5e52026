"""What the fake Anthropic server answers: a tool input computed from the request text by
keyword rules (the same request always gets the same answer), bent by a fault kind
(`malformed`, `out_of_range`, `bad_label`, `bad_action`, `fooled`; see fake_anthropic).

A resolution takes its actions from the forced tool's schema (the `actions` items enum, the
label's allow-list), as a model that follows the schema would; `bad_action` and `fooled`
answer outside it, as a model that ignores the schema would."""

from __future__ import annotations

import json
import re
from typing import Any

from enrichment.core.taxonomy import Action, Label

_INJECTION = re.compile(r"ignore (all |any )?(previous|prior|above)|refund|system prompt", re.I)
_RULES: tuple[tuple[Label, tuple[str, ...]], ...] = (
    (Label.DAMAGED_PACKAGE, ("damag", "crush", "broken", "torn", "leak")),
    (Label.ADDRESS_INVALID, ("invalid address", "address not found", "undeliverable", "bad_addr")),
    (Label.PAYMENT_FAILED, ("payment", "declin", "chargeback")),
    (Label.INVENTORY_SHORTAGE, ("out of stock", "shortage", "short pick", "stockout")),
    (Label.CUSTOMER_UNAVAILABLE, ("not home", "unavailable", "nobody", "missed delivery")),
    (Label.DELIVERY_DELAY, ("in transit", "delayed", "late delivery", "weather")),
    (Label.PICK_DELAY, ("pick delay", "not picked", "pick_delay", "awaiting pick")),
    (Label.PACK_DELAY, ("pack delay", "not packed", "pack_delay", "awaiting pack")),
    (Label.MISSING_SCAN, ("no scan", "missing scan", "missing_scan", "not scanned")),
    (Label.SYSTEM_ERROR, ("system error", "integration", "label print", "sync fail")),
)


def answer_for(props: dict[str, Any], text: str, kind: str = "ok") -> Any:
    """The tool input for a request whose tool schema has `props`, bent by a fault `kind`."""
    if kind == "malformed":
        return '{"label": "DAMAGED_PACK'
    fooled = kind == "fooled" and _INJECTION.search(text) is not None
    if "label" in props:
        return _classification(text, kind, fooled)
    if "actions" in props:
        return _resolution(props["actions"], kind, fooled)
    if "evidence" in json.dumps(props.get("problems", {})):  # the order tool's problem objects
        return _order_problems(text, kind)
    return _analysis(text, kind)


def _hits(text: str) -> list[tuple[Label, str]]:
    # Only the record's data counts, not the stage instruction above it.
    data = text[text.find("<record>") :].lower() if "<record>" in text else text.lower()
    return [(label, kw) for label, kws in _RULES for kw in kws if kw in data]


def _classification(text: str, kind: str, fooled: bool) -> dict[str, Any]:
    hits = _hits(text)
    label = max({lb for lb, _ in hits}, key=lambda lb: sum(h[0] == lb for h in hits), default=None)
    count = sum(h[0] == label for h in hits)
    answer = {
        "label": str(label or Label.OTHER),
        "confidence": round(min(0.95, 0.55 + 0.15 * count), 2) if label else 0.35,
        "notes": f"keyword evidence: {[kw for lb, kw in hits if lb == label]}",
    }
    if kind == "out_of_range" or fooled:
        answer["confidence"] = 5.0 if fooled else 1.7
    if kind == "bad_label":
        answer["label"] = "CUSTOMS_HOLD"
    return answer


def _resolution(actions_schema: dict[str, Any], kind: str, fooled: bool) -> dict[str, Any]:
    allowed = list(actions_schema.get("items", {}).get("enum", []))
    actions = allowed[:1]
    if kind == "bad_action":
        actions = [next(str(a) for a in Action if a not in allowed)]
    if kind == "out_of_range":
        actions = [str(a) for a in Action][:6]
    if fooled:
        actions = ["ISSUE_REFUND"]
    rationale = "schema allows " + (", ".join(allowed) or "no action: needs a person")
    return {"automatable": bool(actions), "actions": actions, "rationale": rationale}


def _analysis(text: str, kind: str) -> dict[str, Any]:
    problems = [f"{label}: mentions {kw!r}" for label, kw in _hits(text)][:10]
    if kind == "out_of_range":
        problems = [f"problem {n}" for n in range(11)]
    summary = "; ".join(problems) if problems else "no clear problem found"
    return {"problems": problems or ["no clear problem found"], "summary": summary[:2000]}


def _order_problems(text: str, kind: str) -> dict[str, Any]:
    """A watched order's problems: one per label its data mentions, confidence by hits."""
    hits = _hits(text)
    problems = [
        {
            "label": str(label),
            "confidence": round(min(0.95, 0.55 + 0.15 * sum(h[0] == label for h in hits)), 2),
            "evidence": [f"mentions {kw!r}" for lb, kw in hits if lb == label][:10],
        }
        for label in dict.fromkeys(lb for lb, _ in hits)
    ][:10]
    if kind == "out_of_range" and problems:
        problems[0]["confidence"] = 1.7
    summary = f"{len(problems)} problem(s)" if problems else "healthy: no problem found"
    return {"problems": problems, "summary": summary}


# -- reading a request ---------------------------------------------------------------------


def forced_tool(body: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The forced tool's name and its schema's properties, or (None, {}) when none is forced."""
    choice = body.get("tool_choice") or {}
    if choice.get("type") != "tool":
        return None, {}
    for tool in body.get("tools") or []:
        if tool.get("name") == choice.get("name"):
            return tool["name"], tool.get("input_schema", {}).get("properties", {})
    return choice.get("name"), {}


def user_text(body: dict[str, Any]) -> str:
    """Every text block of the request's messages, joined."""
    parts = []
    for message in body.get("messages", []):
        content = message.get("content")
        blocks = [{"text": content}] if isinstance(content, str) else content or []
        parts.extend(b.get("text", "") for b in blocks if isinstance(b, dict))
    return "\n".join(parts)
