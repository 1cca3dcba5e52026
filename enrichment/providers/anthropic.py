"""The Anthropic provider: one forced tool call per stage, every answer validated.

The answer's shape comes from the pydantic models the pipeline stores (enrichment.core.schemas):
each model's JSON schema is a tool's `input_schema`, `tool_choice` forces that tool, and the
tool input is validated with `Model.model_validate`. Anything that does not validate is an
InvalidAIOutput, never coerced. The SDK retries transient HTTP failures itself; what is left
afterwards is mapped onto the pipeline's error kinds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import anthropic
import structlog
from pydantic import BaseModel, ValidationError

from enrichment.core.errors import (
    EnrichmentError,
    InvalidAIOutput,
    PermanentError,
    RateLimited,
    TransientError,
)
from enrichment.core.provider import RecordContext, StageCall, Usage
from enrichment.core.schemas import Analysis, Classification, Resolution
from enrichment.core.settings import ConfigurationError, Settings
from enrichment.core.taxonomy import disallowed_actions
from enrichment.providers.pricing import UnknownModelPrice, cost_usd, price_for
from enrichment.providers.prompts import PromptSet, load, render_user
from enrichment.providers.ratelimit import RateLimiter

log = structlog.get_logger(__name__)

# Status codes where a retry cannot help. 402 is billing, 422 a request the API cannot use.
_PERMANENT_STATUS = frozenset({400, 401, 402, 403, 404, 413, 422})


@dataclass(frozen=True)
class _Stage:
    tool: str
    model: type[BaseModel]
    description: str


_STAGES = {
    "analyze": _Stage("record_analysis", Analysis, "Report the problems found in the record."),
    "classify": _Stage(
        "record_classification", Classification, "Record the label, confidence and evidence."
    ),
    "resolve": _Stage("record_resolution", Resolution, "Record the automated resolution."),
}


def tool_definitions() -> list[dict[str, Any]]:
    """All three stage tools, in a fixed order.

    Every request sends all three (and forces one with tool_choice) so that tools + system
    prompt form one identical prefix, cached once for all stages.
    """
    return [
        {"name": s.tool, "description": s.description, "input_schema": _schema(s.model)}
        for s in _STAGES.values()
    ]


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})
    return _inline_refs(schema, defs)


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    # Enums arrive as {"$ref": "#/$defs/Label"}; inlined, the schema needs no resolver.
    if isinstance(node, dict):
        ref = node.get("$ref", "")
        if ref.startswith("#/$defs/"):
            return _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline_refs(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


class _Client(anthropic.Anthropic):
    """The SDK client with two guards on its retry loop (private hooks: if a future SDK renames
    them, the SDK's plain behaviour returns, which is slower but still correct).

    - A retry sleep never exceeds `max_retry_wait_s`: SDK 2.x sleeps for whatever retry-after
      says (up to ~49 days), and a worker holding a lease must not sleep for an hour.
    - A 429 without retry-after is a spend cap: retrying it only spends the retry budget.
    """

    max_retry_wait_s: float = 10.0

    def _calculate_retry_timeout(self, *args: Any, **kwargs: Any) -> float:
        return min(super()._calculate_retry_timeout(*args, **kwargs), self.max_retry_wait_s)

    def _should_retry(self, response: Any) -> bool:
        if response.status_code == 429 and not _has_retry_after(response.headers):
            return False
        return super()._should_retry(response)


def _has_retry_after(headers: Any) -> bool:
    return "retry-after" in headers or "retry-after-ms" in headers


class AnthropicProvider:
    """Provider "anthropic". Raises TransientError, InvalidAIOutput, PermanentError, RateLimited."""

    name = "anthropic"

    def __init__(self, settings: Settings, *, limiter: RateLimiter | None = None) -> None:
        """Built once per worker process; wrong configuration fails here, at start-up.

        Reads the `anthropic_*` and `ai_timeout_s` / `ai_rate_wait_max_s` settings."""
        if not settings.anthropic_api_key:
            raise ConfigurationError("the anthropic provider needs ANTHROPIC_API_KEY")
        try:
            price_for(settings.anthropic_model)
        except UnknownModelPrice as exc:
            raise ConfigurationError(f"ENRICHMENT_ANTHROPIC_MODEL: {exc}") from None
        self._settings = settings
        self._api_key = settings.anthropic_api_key
        self._prompts: PromptSet = load(settings.prompt_version)
        self._tools = tool_definitions()
        self._limiter = limiter
        self._client = _Client(
            api_key=settings.anthropic_api_key,
            base_url=settings.anthropic_base_url,
            timeout=settings.ai_timeout_s,
            max_retries=settings.anthropic_max_retries,
        )
        self._client.max_retry_wait_s = settings.anthropic_max_retry_wait_s

    @classmethod
    def from_settings(cls, settings: Settings) -> AnthropicProvider:
        return cls(settings, limiter=RateLimiter.from_settings(settings, key="anthropic"))

    @property
    def model(self) -> str:
        return self._settings.anthropic_model

    def analyze(self, ctx: RecordContext) -> StageCall[Analysis]:
        return self._call("analyze", ctx)

    def classify(self, ctx: RecordContext) -> StageCall[Classification]:
        return self._call("classify", ctx)

    def resolve(self, ctx: RecordContext) -> StageCall[Resolution]:
        return self._call("resolve", ctx)

    def close(self) -> None:
        self._client.close()
        if self._limiter is not None:
            self._limiter.close()

    @property
    def client(self) -> anthropic.Anthropic:
        return self._client

    def _call(self, stage: str, ctx: RecordContext) -> StageCall[Any]:
        self._take_rate_token(ctx)
        bound = log.bind(stage=stage, record_id=ctx.record_id, tenant=ctx.tenant)
        started = time.perf_counter()
        message = self._send(stage, ctx, bound)
        call = self.answer(stage, ctx, message)
        bound.info(
            "anthropic.call",
            latency_s=round(time.perf_counter() - started, 3),
            input_tokens=call.usage.input_tokens,
            output_tokens=call.usage.output_tokens,
            cache_read_tokens=call.usage.cache_read_tokens,
            cost_usd=call.usage.cost_usd,
        )
        return call

    def answer(
        self, stage: str, ctx: RecordContext, message: Any, *, batch: bool = False
    ) -> StageCall[Any]:
        """The validated result of one stage's message (interactive, or one succeeded batch
        result, priced at the batch rate), or InvalidAIOutput carrying the spent usage."""
        spec = _STAGES[stage]
        usage = self._usage(message, batch=batch)
        # The source and usage go on the call, and on the error if the answer is unusable.
        call = StageCall(None, self.name, self.model, self._prompts.version, usage)
        call = replace(call, result=_parse(spec, message, call))
        if stage == "resolve":
            if ctx.classification is None:
                raise PermanentError("resolve needs a classification; the pipeline sent none")
            bad = disallowed_actions(ctx.classification.label, list(call.result.actions))
            if bad:
                raise _invalid(
                    f"actions {[str(a) for a in bad]} are not allowed for "
                    f"{ctx.classification.label}",
                    call,
                )
        return call

    def _take_rate_token(self, ctx: RecordContext) -> None:
        """Wait in-process for a short wait; give the worker back (RateLimited) for a long one.

        The token comes from the fleet bucket and from the tenant's weighted share of it."""
        if self._limiter is None:
            return
        deadline = time.monotonic() + self._settings.ai_rate_wait_max_s
        while (wait_s := self._limiter.acquire(ctx.tenant, ctx.weight)) > 0:
            if time.monotonic() + wait_s > deadline:
                raise RateLimited(wait_s)
            time.sleep(wait_s)

    def _send(self, stage: str, ctx: RecordContext, bound: Any) -> Any:
        if stage == "resolve" and ctx.classification is None:
            raise PermanentError("resolve needs a classification; the pipeline sent none")
        try:
            return self._client.messages.create(**self.request(stage, ctx))
        except anthropic.APIError as exc:
            error = map_api_error(exc, self._api_key)
        except anthropic.AnthropicError as exc:  # credentials, or a retryable error left over
            error = _non_api_error(exc, self._api_key)
        bound.warning("anthropic.failed", kind=type(error).__name__, error=str(error))
        raise error

    def request(self, stage: str, ctx: RecordContext) -> dict[str, Any]:
        """The Messages request body of one stage: the interactive call sends it, and a
        Message Batch carries it unchanged as a request's `params`."""
        spec = _STAGES[stage]
        return {
            "model": self.model,
            "max_tokens": self._settings.anthropic_max_tokens,
            # The stable prefix (tools, then this system block) is cached for 5 minutes.
            "system": [
                {
                    "type": "text",
                    "text": self._prompts.system,
                    "cache_control": {"type": "ephemeral"},
                }
            ],
            "tools": self._tools,
            "tool_choice": {"type": "tool", "name": spec.tool, "disable_parallel_tool_use": True},
            "messages": [{"role": "user", "content": render_user(self._prompts, stage, ctx)}],
        }

    def _usage(self, message: Any, *, batch: bool = False) -> Usage:
        u = message.usage
        counts = {
            "input_tokens": u.input_tokens or 0,
            "output_tokens": u.output_tokens or 0,
            "cache_write_tokens": u.cache_creation_input_tokens or 0,
            "cache_read_tokens": u.cache_read_input_tokens or 0,
        }
        return Usage(**counts, cost_usd=cost_usd(self.model, **counts, batch=batch))


def _parse(spec: _Stage, message: Any, call: StageCall[Any]) -> BaseModel:
    """The validated tool input, or InvalidAIOutput; never a repaired or defaulted value."""
    block = next((b for b in message.content if b.type == "tool_use" and b.name == spec.tool), None)
    if block is None:
        raise _invalid(f"no {spec.tool} tool call (stop_reason={message.stop_reason})", call)
    try:
        return spec.model.model_validate(block.input)
    except ValidationError as exc:
        raise _invalid(f"{spec.tool} input rejected: {_summary(exc)}", call) from None


def _summary(exc: ValidationError) -> str:
    # Field paths and reasons only: the rejected values may echo customer text.
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    parts = [f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in errors[:5]]
    return "; ".join(parts)


def _invalid(message: str, call: StageCall[Any]) -> InvalidAIOutput:
    error = InvalidAIOutput(message)
    # The tokens were spent even though the answer is unusable, by this model and prompt
    # version: the attempt row records them (outcomes._attempt).
    error.usage = call.usage  # type: ignore[attr-defined]
    error.model = call.model  # type: ignore[attr-defined]
    error.prompt_version = call.prompt_version  # type: ignore[attr-defined]
    return error


def map_api_error(exc: anthropic.APIError, api_key: str) -> EnrichmentError:
    """The pipeline's error kind for an SDK error left after the SDK's own retries."""
    if isinstance(exc, anthropic.APIStatusError):
        return _status_error(exc, api_key)
    if isinstance(exc, anthropic.APIResponseValidationError):
        return InvalidAIOutput(_scrub(f"response did not match the API schema: {exc}", api_key))
    if isinstance(exc, anthropic.APITimeoutError):
        return TransientError("anthropic request timed out")
    if isinstance(exc, anthropic.APIConnectionError):
        return TransientError(_scrub(f"anthropic connection error: {exc.__cause__!r}", api_key))
    return TransientError(_scrub(f"anthropic error: {exc.message}", api_key))


def _status_error(exc: anthropic.APIStatusError, api_key: str) -> EnrichmentError:
    status = exc.status_code
    kind, detail = _error_body(exc.body)
    request_id = exc.response.headers.get("request-id")
    text = _scrub(f"anthropic {status} {kind}: {detail[:300]} (request_id={request_id})", api_key)
    # A 429 without retry-after is a spend cap, not a rate limit: waiting will not lift it.
    spend_cap = status == 429 and not _has_retry_after(exc.response.headers)
    if status in _PERMANENT_STATUS or spend_cap:
        return PermanentError(text)
    return TransientError(text)


def _error_body(body: object) -> tuple[str, str]:
    """(error.type, error.message) from an error body; read by hand to work on SDK 1.x too."""
    error = body.get("error", body) if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "error", str(body or "")
    return str(error.get("type") or "error"), str(error.get("message") or "")


def _non_api_error(exc: anthropic.AnthropicError, api_key: str) -> EnrichmentError:
    text = _scrub(f"anthropic {type(exc).__name__}: {exc}", api_key)
    if isinstance(exc, anthropic.CredentialsError):
        return PermanentError(text)
    return TransientError(text)


def _scrub(text: str, api_key: str) -> str:
    """`text` without the API key, whatever echoed it (a proxy, a URL, a debug message)."""
    return text.replace(api_key, "[API_KEY]") if api_key else text
