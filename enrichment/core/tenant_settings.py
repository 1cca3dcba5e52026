"""A tenant's own settings (the `tenants.settings` JSON), parsed once into one validated,
frozen model. Every reader (the claim's weights, caps and budgets, the AI rate limit's
weight, Message Batches, the audit sample, alert thresholds) reads this model, never the
raw JSON, so one stored value means the same thing everywhere.

Two ways in:
- `TenantSettings.validate(config, allow_private=...)`, for a write: a bad value or an
  unknown key raises `TenantSettingsError`, one line naming the key. A Slack webhook is
  checked as the guarded sender checks it (core/outbound.py: https, every address the host
  resolves to public, unless `allow_private`, the ENRICHMENT_WEBHOOK_ALLOW_PRIVATE setting).
- `TenantSettings.parse(config)`, for a read of a stored row: a bad value is logged (once
  per process and distinct config) and its default used, so an old row never stops the fleet.
  A Slack webhook's form is checked here, its addresses before every POST.

Numbers may be JSON numbers or numeric strings ("2" is 2), never booleans, and must be
finite. Counts must be whole ("4" or 4.0, not 4.5).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import structlog

from enrichment.core import experiments, outbound
from enrichment.core.settings_retention import RETAINED
from enrichment.core.taxonomy import Action
from enrichment.core.time_to_person import SEVERITIES

log = structlog.get_logger(__name__)

BATCH_MODES = ("auto", "never", "always")
SECRET_KEYS = ("slack_webhook_url", "pagerduty_routing_key")
EMPTY: Mapping[str, Any] = MappingProxyType({})


class TenantSettingsError(ValueError):
    """A tenant setting that cannot be stored; the message is one line naming the key."""


@dataclass(frozen=True)
class TenantSettings:
    """One tenant's settings; each field's default is what an absent key means.

    weight: its share of each sweep and of the AI rate limit, relative to 1 (> 0; 1).
    max_in_flight: records leased to chains at once (whole, >= 0; None: no cap).
    daily_budget_usd: AI spend per UTC day; at the budget its records wait (>= 0; None).
    batch_mode: "auto" (a backlog over batch_min_records goes by Message Batch), "never"
      or "always".
    batch_min_records: the "auto" backlog size (whole, > 0; None: ENRICHMENT_BATCH_MIN_RECORDS).
    audit_rate: the share of resolved records sampled for review ([0, 1]; None:
      ENRICHMENT_AUDIT_RATE).
    max_auto_error_rate: the error rate automated decisions may have, the target of the
      threshold advice ((0, 0.5]; None: ENRICHMENT_MAX_AUTO_ERROR_RATE; reviews/stats.py).
    auto_threshold: beat's refit sets `tenants.confidence_threshold` to the threshold search's
      answer on the calibrated audit reviews (never below ENRICHMENT_AUTO_THRESHOLD_FLOOR;
      each change audited; true/false; false: advice only; reviews/refit.py).
    alert_thresholds: alert rule or notice name -> its threshold (finite numbers; each
      rule applies its own bounds, enrichment.alerting).
    alert_routes: severity -> channels (an object; its entries are checked by
      enrichment.alerting.routing).
    slack_webhook_url, pagerduty_routing_key: the tenant's own destinations (strings).
    api_rpm, api_burst, api_concurrency: the tenant's API limits (whole; rpm and concurrency
      >= 0, 0 meaning unlimited; burst >= 1; None: ENRICHMENT_API_RPM, _BURST, _CONCURRENCY).
    approval_actions: actions (taxonomy names) that wait in the review queue for a person's
      approval before their action.requested event is sent (a list; empty: none wait).
    time_to_person_s: severity ("low", "medium", "high", "critical") -> seconds an undecided
      record may wait for a person (numbers > 0; an absent severity:
      ENRICHMENT_REVIEW_WITHIN_S_<SEVERITY>; core/time_to_person.py).
    review_deadline_s: severity -> seconds a queued record may wait for its decision (numbers
      > 0; an absent severity: ENRICHMENT_REVIEW_DEADLINE_S_<SEVERITY>; reviews/queue.py).
    experiment: variants of prompt version and model, live (a sticky weighted split) or
      shadow (answers kept, never acted on) (an object; core/experiments.py; None: the
      fleet's ENRICHMENT_EXPERIMENT, if any: experiments.of_tenant).
    cascade: the local model answers classify alone when its calibrated probability clears
      the error budget, else the LLM (true/false; false; enrichment/experiments/cascade.py).
    retention_days: kind of history ("attempts_succeeded", "events_delivered", "records"...:
      core/settings_retention.RETAINED) -> days it is kept (whole, >= 0; 0: forever; an
      absent kind: ENRICHMENT_RETENTION_<KIND>_DAYS; enrichment/history/retention.py).
    """

    weight: float = 1.0
    max_in_flight: int | None = None
    daily_budget_usd: float | None = None
    batch_mode: str = "auto"
    batch_min_records: int | None = None
    audit_rate: float | None = None
    max_auto_error_rate: float | None = None
    auto_threshold: bool = False
    alert_thresholds: Mapping[str, float] = field(default_factory=lambda: EMPTY)
    alert_routes: Mapping[str, Any] | None = None
    slack_webhook_url: str | None = None
    pagerduty_routing_key: str | None = None
    api_rpm: int | None = None
    api_burst: int | None = None
    api_concurrency: int | None = None
    approval_actions: frozenset[str] = frozenset()
    time_to_person_s: Mapping[str, float] = field(default_factory=lambda: EMPTY)
    review_deadline_s: Mapping[str, float] = field(default_factory=lambda: EMPTY)
    experiment: experiments.Experiment | None = None
    cascade: bool = False
    retention_days: Mapping[str, int] = field(default_factory=lambda: EMPTY)

    @classmethod
    def parse(cls, config: Mapping[str, Any] | TenantSettings | None) -> TenantSettings:
        """A stored row's settings: bad values logged and replaced by their defaults."""
        if isinstance(config, TenantSettings):
            return config
        return _parse_stored(_canonical(config))

    @classmethod
    def validate(
        cls,
        config: Mapping[str, Any] | None,
        *,
        allow_private: bool = False,
        resolver: outbound.Resolver | None = None,
    ) -> TenantSettings:
        """Settings about to be written: any bad value or unknown key raises
        TenantSettingsError. `allow_private`: ENRICHMENT_WEBHOOK_ALLOW_PRIVATE, for the
        Slack webhook's check (which resolves its host, through `resolver` if given)."""
        unknown = sorted(set(config or {}) - set(PARSERS))
        if unknown:
            known = ", ".join(PARSERS)
            raise TenantSettingsError(f"unknown tenant setting {unknown[0]!r} (known: {known})")
        own = _build(config or {}, strict=True)
        if own.slack_webhook_url is not None:
            _check_destination(own.slack_webhook_url, allow_private, resolver)
        return own


class _Bad(ValueError):
    """A value that is not what its key expects; the message says what is expected."""


def _number(raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise _Bad("must be a number")
    try:
        value = float(raw)
    except ValueError:
        raise _Bad("must be a number") from None
    if not math.isfinite(value):
        raise _Bad("must be a finite number")
    return value


def _positive(raw: Any) -> float:
    value = _number(raw)
    if value <= 0:
        raise _Bad("must be a number > 0")
    return value


def _non_negative(raw: Any) -> float:
    value = _number(raw)
    if value < 0:
        raise _Bad("must be a number >= 0")
    return value


def _count_from(minimum: int) -> Callable[[Any], int]:
    def count(raw: Any) -> int:
        value = _number(raw)
        if value != math.floor(value) or value < minimum:
            raise _Bad(f"must be a whole number >= {minimum}")
        return int(value)

    return count


def _fraction(raw: Any) -> float:
    value = _number(raw)
    if not 0.0 <= value <= 1.0:
        raise _Bad("must be a number in [0, 1]")
    return value


def _error_rate(raw: Any) -> float:
    value = _number(raw)
    if not 0.0 < value <= 0.5:
        raise _Bad("must be a number in (0, 0.5]")
    return value


def _batch_mode(raw: Any) -> str:
    if raw not in BATCH_MODES:
        raise _Bad(f"must be one of {', '.join(BATCH_MODES)}")
    return raw


def _names(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
        raise _Bad("must be a list of action names")
    return tuple(raw)


def _object(raw: Any) -> Mapping[str, Any]:
    if not isinstance(raw, dict):
        raise _Bad("must be an object")
    return MappingProxyType(dict(raw))


def _text(raw: Any) -> str:
    if not isinstance(raw, str) or not raw:
        raise _Bad("must be a non-empty string")
    return raw


def _experiment(raw: Any) -> experiments.Experiment:
    try:
        return experiments.parse(raw)
    except experiments.ExperimentError as exc:
        raise _Bad(str(exc)) from None


def _flag(raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise _Bad("must be true or false")
    return raw


def _url(raw: Any) -> str:
    """An http(s) URL of an accepted form; its addresses are checked on write and send."""
    url = _text(raw).strip()
    try:
        outbound.parse_url(url, allow_private=True, what="Slack webhook")
    except outbound.UnsafeURL as exc:
        raise _Bad(f"is refused: {exc}") from None
    return url


def _check_destination(url: str, allow_private: bool, resolver: outbound.Resolver | None):
    try:
        outbound.check_url(
            url, allow_private=allow_private, what="Slack webhook", resolver=resolver
        )
    except outbound.UnsafeURL as exc:
        # One line, never the URL: it is a secret.
        raise TenantSettingsError(f"tenant setting 'slack_webhook_url' is refused: {exc}") from None


# key -> how its value is read. `alert_thresholds` is read entry by entry (_thresholds).
PARSERS: dict[str, Callable[[Any], Any]] = {
    "weight": _positive,
    "max_in_flight": _count_from(0),
    "daily_budget_usd": _non_negative,
    "batch_mode": _batch_mode,
    "batch_min_records": _count_from(1),
    "audit_rate": _fraction,
    "max_auto_error_rate": _error_rate,
    "auto_threshold": _flag,
    "alert_thresholds": _object,
    "alert_routes": _object,
    "slack_webhook_url": _url,
    "pagerduty_routing_key": _text,
    "api_rpm": _count_from(0),
    "api_burst": _count_from(1),
    "api_concurrency": _count_from(0),
    "approval_actions": _names,
    "time_to_person_s": _object,
    "review_deadline_s": _object,
    "experiment": _experiment,
    "cascade": _flag,
    "retention_days": _object,
}
assert set(PARSERS) == {f.name for f in fields(TenantSettings)}


def _build(config: Mapping[str, Any], *, strict: bool) -> TenantSettings:
    values = {}
    for key, read in PARSERS.items():
        raw = config.get(key)
        if raw is None:
            continue
        try:
            values[key] = read(raw)
        except _Bad as bad:
            _reject(key, raw, str(bad), strict=strict)
    if "alert_thresholds" in values:
        values["alert_thresholds"] = _thresholds(values["alert_thresholds"], strict=strict)
    if "approval_actions" in values:
        values["approval_actions"] = _actions(values["approval_actions"], strict=strict)
    if "time_to_person_s" in values:
        values["time_to_person_s"] = _limits(values["time_to_person_s"], strict=strict)
    if "review_deadline_s" in values:
        values["review_deadline_s"] = _limits(
            values["review_deadline_s"], strict=strict, key="review_deadline_s"
        )
    if "retention_days" in values:
        values["retention_days"] = _retention(values["retention_days"], strict=strict)
    return TenantSettings(**values)


def _thresholds(own: Mapping[str, Any], *, strict: bool) -> Mapping[str, float]:
    """Each threshold a finite number; a bad one is dropped (or, strictly, refused)."""
    out = {}
    for name, raw in own.items():
        try:
            out[str(name)] = _number(raw)
        except _Bad as bad:
            _reject(f"alert_thresholds.{name}", raw, str(bad), strict=strict)
    return MappingProxyType(out)


def _limits(
    own: Mapping[str, Any], *, strict: bool, key: str = "time_to_person_s"
) -> Mapping[str, float]:
    """Each entry a severity with seconds > 0; a bad one is dropped (or, strictly, refused),
    so its severity keeps the fleet's limit."""
    out = {}
    for name, raw in own.items():
        try:
            if name not in SEVERITIES:
                raise _Bad(f"names an unknown severity (known: {', '.join(SEVERITIES)})")
            out[name] = _positive(raw)
        except _Bad as bad:
            _reject(f"{key}.{name}", raw, str(bad), strict=strict)
    return MappingProxyType(out)


def _retention(own: Mapping[str, Any], *, strict: bool) -> Mapping[str, int]:
    """Each entry a kind of history with whole days >= 0; a bad one is dropped (or,
    strictly, refused), so its kind keeps the fleet's retention."""
    out = {}
    for name, raw in own.items():
        try:
            if name not in RETAINED:
                raise _Bad(f"names an unknown kind (known: {', '.join(RETAINED)})")
            out[name] = _count_from(0)(raw)
        except _Bad as bad:
            _reject(f"retention_days.{name}", raw, str(bad), strict=strict)
    return MappingProxyType(out)


def _actions(names: tuple[str, ...], *, strict: bool) -> frozenset[str]:
    """Each name an action of the taxonomy. On read an unknown one is dropped and the others
    kept: a bad entry must not let the costly actions beside it go out unapproved."""
    known = set(Action)
    for name in names:
        if name not in known:
            why = f"names an unknown action (known: {', '.join(Action)})"
            _reject("approval_actions", name, why, strict=strict)
    return frozenset(n for n in names if n in known)


def _reject(key: str, raw: Any, why: str, *, strict: bool) -> None:
    # A destination's value is a secret (a Slack webhook's path, a routing key): its type only.
    got = type(raw).__name__ if key in SECRET_KEYS else repr(raw)[:40]
    if strict:
        raise TenantSettingsError(f"tenant setting {key!r} {why}, got {got}")
    # The value itself is not logged: some settings are destinations with secrets in them.
    log.warning("tenant_settings.ignored", key=key, reason=why, got=type(raw).__name__)


def _canonical(config: Mapping[str, Any] | None) -> str:
    return json.dumps(dict(config or {}), sort_keys=True, default=str)


@lru_cache(maxsize=512)
def _parse_stored(canonical: str) -> TenantSettings:
    """Parsed once per process for each distinct stored config (so a bad value is logged
    once, not on every claim)."""
    return _build(json.loads(canonical), strict=False)
