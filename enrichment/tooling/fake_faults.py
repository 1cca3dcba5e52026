"""The fault syntax of the fake Anthropic server (`fake_anthropic`) and its kinds.

Fault syntax (`--faults`, or `FakeAnthropic(faults=...)`): comma-separated `kind=probability`
pairs, e.g.
    "429=0.1,500=0.05,529=0.05,timeout=0.02,malformed=0.03,out_of_range=0.03,bad_label=0.01,
     bad_action=0.01"
and the shorthand "mix=0.3" (alias "rate=0.3"), which spreads 0.3 over the eight standard kinds
below in fixed proportions. Probabilities add up and must total at most 1; the rest is "ok".
Kinds:
    429           rate_limit_error with retry-after (the SDK retries it)
    spend_cap     429 with no retry-after (a spend limit: permanent)
    500, 529      api_error / overloaded_error with retry-after (the SDK retries them)
    400, 401, 403, 404, 413   the permanent client errors
    timeout       sleeps `hang_s` (60 s) before answering, past the client's timeout
    malformed     the tool input is a truncated JSON string instead of an object
    out_of_range  confidence 1.7 (classify), 11 problems (analyze), 6 actions (resolve)
    bad_label     a label outside the taxonomy (classify only; other stages answer normally)
    bad_action    an action the allow-list forbids for the label (resolve only)
    fooled        when the request carries a prompt injection ("ignore previous instructions",
                  "refund", ...), answer as a fooled model would: confidence 5.0 (classify),
                  an ISSUE_REFUND action (resolve); without an injection, answer normally
Inside a Message Batch an HTTP error kind becomes that request's `errored` result, and
"timeout" answers normally.
"""

from __future__ import annotations

# Shares of the "mix" shorthand: rate limits and overloads dominate real incidents.
MIX_SHARES: dict[str, float] = {
    "429": 0.3,
    "500": 0.15,
    "529": 0.15,
    "timeout": 0.05,
    "malformed": 0.1,
    "out_of_range": 0.1,
    "bad_label": 0.075,
    "bad_action": 0.075,
}
ERRORS: dict[str, tuple[int, str, str]] = {
    "400": (400, "invalid_request_error", "messages: field required"),
    "401": (401, "authentication_error", "invalid x-api-key"),
    "403": (403, "permission_error", "your API key does not have permission to use this model"),
    "404": (404, "not_found_error", "model not found"),
    "413": (413, "request_too_large", "request exceeds the maximum allowed size"),
    "429": (429, "rate_limit_error", "number of requests has exceeded your rate limit"),
    "spend_cap": (429, "rate_limit_error", "you have reached your specified API usage limits"),
    "500": (500, "api_error", "internal server error"),
    "529": (529, "overloaded_error", "Overloaded"),
}
RETRY_AFTER_KINDS = frozenset({"429", "500", "529"})
KINDS = frozenset(ERRORS) | frozenset(MIX_SHARES) | {"fooled", "ok"}


def _probability(item: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ValueError(
            f"fault {item!r}: write kind=probability, e.g. 429=0.1 or mix=0.3"
        ) from None


def parse_faults(spec: str) -> dict[str, float]:
    """`"429=0.1,mix=0.2"` -> {kind: probability}; raises ValueError with the valid kinds."""
    faults: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        kind, _, raw = item.partition("=")
        kind, share = kind.strip(), _probability(item, raw)
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"fault {item!r}: probability must be in [0, 1]")
        spread = {k: share * w for k, w in MIX_SHARES.items()} if kind in ("mix", "rate") else None
        if spread is None and kind not in KINDS - {"ok"}:
            raise ValueError(f"unknown fault {kind!r}; kinds: mix, {', '.join(sorted(KINDS))}")
        for k, p in (spread or {kind: share}).items():
            faults[k] = faults.get(k, 0.0) + p
    if sum(faults.values()) > 1.0 + 1e-9:
        raise ValueError(f"fault probabilities add up to {sum(faults.values()):.3f} > 1")
    return faults
