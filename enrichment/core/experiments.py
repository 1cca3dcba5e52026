"""An experiment on prompts and models: a tenant's variants, as its `experiment` setting
holds them (core/tenant_settings.py), checked and frozen here. No database, no provider.

    {"name": "prompt-v1-vs-v2",
     "variants": [
       {"name": "control", "prompt_version": "v2", "weight": 1},
       {"name": "short", "prompt_version": "v1", "weight": 1},
       {"name": "bigger", "model": "claude-sonnet-4-5", "shadow": true, "shadow_rate": 0.2}]}

Live variants (shadow false) split the tenant's records by weight, stickily: a record's
variant is a hash of the experiment's name and the record's id (reviews/stats.py
`sticky_variant`), the same on every process and every run; renaming the experiment
reshuffles. A shadow variant answers the classify stage of a share `shadow_rate` of the
records (also sticky) without acting: its answer goes to `shadow_answers`, never to the
record. `prompt_version` / `model` absent: the fleet's (ENRICHMENT_PROMPT_VERSION,
ENRICHMENT_ANTHROPIC_MODEL). The local provider has one model and ignores `model`.

The whole fleet can run one too: ENRICHMENT_EXPERIMENT, the same JSON, is the experiment of
every tenant without an `experiment` of its own; a tenant's own replaces it whole (`of_tenant`,
the one place that decides, for the pipeline and the report alike).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from enrichment.core.settings_env import ConfigurationError

if TYPE_CHECKING:
    from enrichment.core.settings import Settings
    from enrichment.core.tenant_settings import TenantSettings

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
PROMPT_VERSION = re.compile(r"^v[0-9]{1,4}$")
MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,63}$")
MAX_VARIANTS = 8
DEFAULT_SHADOW_RATE = 0.1
CASCADE_LOCAL = "cascade:local"  # the shadow_answers variant of the local model's answer


class ExperimentError(ValueError):
    """What is wrong with an experiment, as a phrase ("variant 'x' ...")."""


@dataclass(frozen=True)
class Variant:
    name: str
    prompt_version: str | None = None
    model: str | None = None
    weight: float = 1.0
    shadow: bool = False
    shadow_rate: float = DEFAULT_SHADOW_RATE


@dataclass(frozen=True)
class Experiment:
    name: str
    variants: tuple[Variant, ...]

    @property
    def live(self) -> tuple[Variant, ...]:
        return tuple(v for v in self.variants if not v.shadow and v.weight > 0)

    @property
    def shadows(self) -> tuple[Variant, ...]:
        return tuple(v for v in self.variants if v.shadow and v.shadow_rate > 0)

    def weights(self) -> dict[str, float]:
        return {v.name: v.weight for v in self.live}

    def named(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)


def parse(raw: Any) -> Experiment:
    """The experiment of a setting's value, or ExperimentError saying what is wrong."""
    if not isinstance(raw, Mapping):
        raise ExperimentError("must be an object with 'name' and 'variants'")
    unknown = sorted(set(raw) - {"name", "variants"})
    if unknown:
        raise ExperimentError(f"has an unknown key {unknown[0]!r} (known: name, variants)")
    name = _name(raw.get("name"), "its name")
    items = raw.get("variants")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_VARIANTS:
        raise ExperimentError(f"needs 'variants': a list of 1 to {MAX_VARIANTS} objects")
    variants = tuple(_variant(item) for item in items)
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ExperimentError("names a variant twice")
    found = Experiment(name, variants)
    if not found.live:
        raise ExperimentError("needs at least one live variant (shadow false) of weight > 0")
    return found


def of_tenant(own: TenantSettings, settings: Settings) -> Experiment | None:
    """The experiment a tenant runs: its own `experiment`, whole, else the fleet's."""
    return own.experiment if own.experiment is not None else settings.experiment


FLEET_VARIABLE = "ENRICHMENT_EXPERIMENT"


def from_env_value(raw: str | None) -> Experiment | None:
    """ENRICHMENT_EXPERIMENT's experiment (unset or empty: None), or a one-line
    ConfigurationError naming the variable."""
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        raise ConfigurationError(
            f"{FLEET_VARIABLE} is not JSON: write an object as the tenant key `experiment`,"
            ' {"name": ..., "variants": [{"name": ..., "prompt_version": ...}]}'
        ) from None
    try:
        return parse(value)
    except ExperimentError as exc:
        raise ConfigurationError(f"{FLEET_VARIABLE}: the experiment {exc}") from None


_VARIANT_KEYS = ("name", "prompt_version", "model", "weight", "shadow", "shadow_rate")


def _variant(raw: Any) -> Variant:
    if not isinstance(raw, Mapping):
        raise ExperimentError("has a variant that is not an object")
    name = _name(raw.get("name"), "a variant's name")
    unknown = sorted(set(raw) - set(_VARIANT_KEYS))
    if unknown:
        known = ", ".join(_VARIANT_KEYS)
        raise ExperimentError(f"variant {name!r} has an unknown key {unknown[0]!r} ({known})")
    shadow = raw.get("shadow", False)
    if not isinstance(shadow, bool):
        raise ExperimentError(f"variant {name!r}: 'shadow' must be true or false")
    return Variant(
        name=name,
        prompt_version=_matching(raw.get("prompt_version"), PROMPT_VERSION, name, "prompt_version"),
        model=_matching(raw.get("model"), MODEL, name, "model"),
        weight=_number(raw.get("weight", 1.0), name, "weight", high=1e6),
        shadow=shadow,
        shadow_rate=_number(raw.get("shadow_rate", DEFAULT_SHADOW_RATE), name, "shadow_rate"),
    )


def _name(raw: Any, what: str) -> str:
    if not isinstance(raw, str) or not NAME.match(raw):
        raise ExperimentError(f"{what} must be 1-64 letters, digits or . _ : - (got {raw!r:.40})")
    return raw


def _matching(raw: Any, pattern: re.Pattern, name: str, key: str) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not pattern.match(raw):
        raise ExperimentError(f"variant {name!r}: {key!r} is not a valid value (got {raw!r:.40})")
    return raw


def _number(raw: Any, name: str, key: str, *, high: float = 1.0) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 <= raw <= high:
        raise ExperimentError(f"variant {name!r}: {key!r} must be a number in [0, {high:g}]")
    return float(raw)
