"""The Anthropic provider: one forced tool call per stage, every answer validated.

The answer's shape comes from the pydantic models the pipeline stores (enrichment.core.schemas):
each model's JSON schema is a tool's `input_schema` (prompts/tools.py), `tool_choice` forces
the stage's tool, and the tool input is validated with `Model.model_validate`. Anything that
does not validate is an InvalidAIOutput, never coerced. The SDK retries transient HTTP failures
itself; what is left afterwards is mapped onto the pipeline's error kinds and causes
(anthropic_errors.py).

Resolve sends one tool per label whose `actions` enum is that label's allow-list, and forces the
tool of the record's classified label; every request still sends every tool, so tools + system
prompt are one identical prefix, cached once for all stages and labels.

Structured output, decided: forced tool use, not `output_config` json_schema, not strict tools.
- Forced tool use (thinking disabled) works on every model in the price table, as far as the
  docs say (nothing here reaches the real API), in Message Batches unchanged, and keeps the
  tools inside the one cached prefix.
- Constrained decoding (`output_config`, or `strict: true` on a tool) guarantees the shape
  only: numeric bounds and lengths are not enforced by it (the SDK moves `minimum`/`maximum`
  into descriptions), so our validation stays either way. What it would add, no malformed
  JSON, we already catch as InvalidAIOutput and retry; a strict schema must also drop the
  keywords it does not support. Revisit it if attempt rows show many malformed answers.
- The allow-list check in `answer` is the guarantee; the per-label enum only steers the model.
- Forced tool use cannot be combined with thinking, and Haiku 5.5 thinks by default, so every
  request disables thinking (a short classification does not need it, and it saves output
  tokens). Models that cannot disable thinking or refuse forced tool use fail at start-up;
  moving to one of them means moving to `output_config`.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import anthropic
import structlog
from pydantic import BaseModel, ValidationError

from enrichment.core.errors import (
    InvalidAIOutput,
    PermanentError,
    RateLimited,
)
from enrichment.core.faults import Cause, with_cause
from enrichment.core.provider import RecordContext, StageCall, Usage
from enrichment.core.schemas import Analysis, Classification, OrderAnalysis, Resolution
from enrichment.core.settings import ConfigurationError, Settings
from enrichment.core.taxonomy import disallowed_actions
from enrichment.providers.anthropic_batches import BatchResult, MessageBatch, MessageBatches
from enrichment.providers.anthropic_errors import (
    ERROR_TYPE_CAUSE,
    has_retry_after,
    map_api_error,
    non_api_error,
)
from enrichment.providers.pricing import (
    UnknownModelPrice,
    cache_min_tokens,
    cost_usd,
    price_for,
)
from enrichment.providers.prompts import PromptSet, load, render_user
from enrichment.providers.prompts.tools import tool_definitions, tool_name
from enrichment.providers.ratelimit import RateLimiter

__all__ = ["ERROR_TYPE_CAUSE", "AnthropicProvider", "map_api_error", "tool_definitions"]

log = structlog.get_logger(__name__)

_MODELS: dict[str, type[BaseModel]] = {
    "analyze": Analysis,
    "classify": Classification,
    "resolve": Resolution,
    "analyze_order": OrderAnalysis,  # a watched order's one stage
}

# Models this request shape cannot work on: thinking is always on there, and a forced tool
# call answers 400 (docs: "What's new in Claude Opus 5.5", forced tool use returns an error,
# also on Fable 5.1; Amazon Bedrock's adaptive-thinking page: Mythos 5.x, Fable 5.x, Opus 4.7
# and Mythos Preview reject thinking "disabled"). Prefixes, as in the price table.
_NO_FORCED_TOOL = (
    "claude-opus-5-5",
    "claude-fable-5",
    "claude-mythos-5",
    "claude-opus-4-7",
    "claude-mythos-preview",
)


def _sdk_deprecations() -> dict[str, str]:
    """model -> end-of-life date, as the installed SDK lists them (it warns per call from it)."""
    try:
        from anthropic._data import DEPRECATED_MODELS  # private module: may move in a new SDK
    except ImportError:
        return {}
    return dict(DEPRECATED_MODELS)


def check_model(model: str) -> None:
    """Fail at start-up on a model we cannot use; warn on one the SDK lists as deprecated."""
    if model.startswith(_NO_FORCED_TOOL):
        raise ConfigurationError(
            f"ENRICHMENT_ANTHROPIC_MODEL={model!r} refuses forced tool use (its thinking cannot "
            "be turned off); choose e.g. claude-haiku-5-5"
        )
    try:
        price_for(model)
    except UnknownModelPrice as exc:
        raise ConfigurationError(f"ENRICHMENT_ANTHROPIC_MODEL: {exc}") from None
    end_of_life = _sdk_deprecations().get(model)
    if end_of_life is not None:
        log.warning(
            "anthropic.model_deprecated",
            model=model,
            end_of_life=end_of_life,
            hint="set ENRICHMENT_ANTHROPIC_MODEL to a current model, e.g. claude-haiku-5-5",
        )


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
        if response.status_code == 429 and not has_retry_after(response.headers):
            return False
        return super()._should_retry(response)


class AnthropicProvider:
    """Provider "anthropic". Raises TransientError, InvalidAIOutput, PermanentError, RateLimited."""

    name = "anthropic"

    def __init__(self, settings: Settings, *, limiter: RateLimiter | None = None) -> None:
        """Built once per worker process; wrong configuration fails here, at start-up.

        Reads the `anthropic_*` and `ai_timeout_s` / `ai_rate_wait_max_s` settings."""
        if not settings.anthropic_api_key:
            raise ConfigurationError("the anthropic provider needs ANTHROPIC_API_KEY")
        check_model(settings.anthropic_model)
        if settings.breaker.fallback_model is not None:
            check_model(settings.breaker.fallback_model)
        self._model = settings.anthropic_model
        self._fallback: AnthropicProvider | None = None
        self._variants: dict[tuple[str, str], AnthropicProvider] = {}
        self._settings = settings
        self._api_key = settings.anthropic_api_key
        self._prompts: PromptSet = load(settings.prompt_version)
        self._tools = tool_definitions()
        self._warn_if_uncached()
        self._limiter = limiter
        self._client = _Client(
            api_key=settings.anthropic_api_key,
            base_url=settings.anthropic_base_url,
            timeout=settings.ai_timeout_s,
            max_retries=settings.anthropic_max_retries,
        )
        self._client.max_retry_wait_s = settings.anthropic_max_retry_wait_s
        self._batches = MessageBatches(self._client, self._api_key)

    def _warn_if_uncached(self) -> None:
        # Below the model's minimum the API caches nothing, silently: say so once, at start-up.
        body = {"tools": self._tools, "system": self._system()}
        tokens, minimum = prefix_tokens(body), cache_min_tokens(self.model)
        if tokens < minimum:
            log.warning(
                "anthropic.prefix_not_cached",
                model=self.model,
                prompt_version=self._prompts.version,
                prefix_tokens=tokens,
                min_cacheable_tokens=minimum,
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> AnthropicProvider:
        return cls(settings, limiter=RateLimiter.from_settings(settings, key="anthropic"))

    @property
    def model(self) -> str:
        return self._model

    def fallback(self) -> AnthropicProvider | None:
        """This provider on ENRICHMENT_ANTHROPIC_FALLBACK_MODEL (the same client, limiter and
        prompts; made once), or None when none is set. One hop: the fallback has none."""
        model = self._settings.breaker.fallback_model
        if model is None or model == self._model:
            return None
        if self._fallback is None:
            twin = copy.copy(self)
            twin._model, twin._fallback = model, None
            self._fallback = twin
        return self._fallback

    def for_variant(self, prompt_version: str | None, model: str | None) -> AnthropicProvider:
        """This provider on an experiment variant's prompt version and model (None: this
        one's), sharing the client and limiter; made once per pair. An unknown prompt version
        or model raises ConfigurationError."""
        key = (prompt_version or self._prompts.version, model or self._model)
        if key == (self._prompts.version, self._model):
            return self
        if key not in self._variants:
            prompts = load(key[0])
            check_model(key[1])
            twin = copy.copy(self)
            twin._prompts, twin._model, twin._fallback, twin._variants = prompts, key[1], None, {}
            self._variants[key] = twin
        return self._variants[key]

    def analyze(self, ctx: RecordContext) -> StageCall[Analysis]:
        return self._call("analyze", ctx)

    def classify(self, ctx: RecordContext) -> StageCall[Classification]:
        return self._call("classify", ctx)

    def resolve(self, ctx: RecordContext) -> StageCall[Resolution]:
        return self._call("resolve", ctx)

    def analyze_order(self, ctx: RecordContext) -> StageCall[OrderAnalysis]:
        return self._call("analyze_order", ctx)

    def close(self) -> None:
        self._client.close()
        if self._limiter is not None:
            self._limiter.close()

    # Message Batches (anthropic_batches.py): the same client, errors mapped as _send maps
    # them. Each request's params are `request`'s body; each succeeded result goes to `answer`.

    def create_batch(self, requests: list[dict[str, Any]]) -> MessageBatch:
        return self._batches.create(requests)

    def retrieve_batch(self, batch_id: str) -> MessageBatch:
        return self._batches.retrieve(batch_id)

    def batch_results(self, batch_id: str) -> Iterator[BatchResult]:
        return self._batches.results(batch_id)

    def cancel_batch(self, batch_id: str) -> MessageBatch:
        return self._batches.cancel(batch_id)

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
        _require_classification(stage, ctx)
        usage = self._usage(message, batch=batch)
        # The source and usage go on the call, and on the error if the answer is unusable.
        call = StageCall(None, self.name, self.model, self._prompts.version, usage)
        call = replace(call, result=_parse(_tool(stage, ctx), _MODELS[stage], message, call))
        if stage == "resolve":
            label = ctx.classification.label  # type: ignore[union-attr]
            bad = disallowed_actions(label, list(call.result.actions))
            if bad:
                raise _invalid(f"actions {[str(a) for a in bad]} are not allowed for {label}", call)
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
        try:
            return self._client.messages.create(**self.request(stage, ctx))
        except anthropic.APIError as exc:
            error = map_api_error(exc, self._api_key)
        except anthropic.AnthropicError as exc:  # credentials, or a retryable error left over
            error = non_api_error(exc, self._api_key)
        bound.warning("anthropic.failed", kind=type(error).__name__, error=str(error))
        # The attempt row names the model that failed: the breaker counts per model.
        error.model = self.model  # type: ignore[attr-defined]
        raise error

    def request(self, stage: str, ctx: RecordContext) -> dict[str, Any]:
        """The Messages request body of one stage: the interactive call sends it, and a
        Message Batch carries it unchanged as a request's `params`."""
        _require_classification(stage, ctx)
        return {
            "model": self.model,
            "max_tokens": self._settings.anthropic_max_tokens,
            "system": self._system(),
            "tools": self._tools,
            "tool_choice": {
                "type": "tool",
                "name": _tool(stage, ctx),
                "disable_parallel_tool_use": True,
            },
            # A forced tool call and thinking exclude each other (see the module docstring).
            "thinking": {"type": "disabled"},
            "messages": [{"role": "user", "content": render_user(self._prompts, stage, ctx)}],
        }

    def _system(self) -> list[dict[str, Any]]:
        # The stable prefix (all tools, then this system block) is cached for 5 minutes.
        text = self._prompts.system
        return [{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}]

    def _usage(self, message: Any, *, batch: bool = False) -> Usage:
        u = message.usage
        counts = {
            "input_tokens": u.input_tokens or 0,
            "output_tokens": u.output_tokens or 0,
            "cache_write_tokens": u.cache_creation_input_tokens or 0,
            "cache_read_tokens": u.cache_read_input_tokens or 0,
        }
        return Usage(**counts, cost_usd=cost_usd(self.model, **counts, batch=batch))


def prefix_tokens(body: dict[str, Any]) -> int:
    """The cached prefix (tools, then system) of a request body in tokens, estimated at 4
    characters a token: the API's count differs by tokenizer (Haiku 5.5 counts ~30% more)."""
    return math.ceil(len(json.dumps(body.get("tools")) + json.dumps(body.get("system"))) / 4)


def _require_classification(stage: str, ctx: RecordContext) -> None:
    if stage == "resolve" and ctx.classification is None:
        raise PermanentError("resolve needs a classification; the pipeline sent none")


def _tool(stage: str, ctx: RecordContext) -> str:
    label = ctx.classification.label if ctx.classification is not None else None
    return tool_name(stage, label if stage == "resolve" else None)


def _parse(tool: str, model: type[BaseModel], message: Any, call: StageCall[Any]) -> BaseModel:
    """The validated tool input, or InvalidAIOutput; never a repaired or defaulted value."""
    block = next((b for b in message.content if b.type == "tool_use" and b.name == tool), None)
    if block is None:
        raise _invalid(f"no {tool} tool call (stop_reason={message.stop_reason})", call)
    try:
        return model.model_validate(block.input)
    except ValidationError as exc:
        raise _invalid(f"{tool} input rejected: {_summary(exc)}", call) from None


def _summary(exc: ValidationError) -> str:
    # Field paths and reasons only: the rejected values may echo customer text.
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    parts = [f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in errors[:5]]
    return "; ".join(parts)


def _invalid(message: str, call: StageCall[Any]) -> InvalidAIOutput:
    error = with_cause(InvalidAIOutput(message), Cause.INVALID_OUTPUT)
    # The tokens were spent even though the answer is unusable, by this model and prompt
    # version: the attempt row records them (outcomes._attempt).
    error.usage = call.usage  # type: ignore[attr-defined]
    error.model = call.model  # type: ignore[attr-defined]
    error.prompt_version = call.prompt_version  # type: ignore[attr-defined]
    return error
