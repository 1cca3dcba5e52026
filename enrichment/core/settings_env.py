"""How a setting is declared and read from the environment: the only module that reads it
(ENRICHMENT_VAR_DIR aside, in settings.py, which decides where the defaults live).

A setting is a dataclass field declared with `setting(...)`: its default (the one place it
is written), its environment variable, its bounds or choices and a one-line description.
`read_fields` builds a section from its fields, and docs/configuration.md is generated from
the same fields (settings_doc.py). Wrong values fail at start-up with a one-line hint.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, field, fields
from typing import Any, Self


class ConfigurationError(RuntimeError):
    """A setting is missing or invalid; the message says how to fix it."""


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_float(name: str, default: float, *, low: float = 0.0, high: float | None = None) -> float:
    raw = env_str(name, str(default))
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a number") from None
    if value < low or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ConfigurationError(f"{name}={raw!r} must be {bound}")
    return value


def env_int(name: str, default: int, *, low: int = 0) -> int:
    raw = env_str(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a whole number") from None
    if value < low:
        raise ConfigurationError(f"{name}={raw!r} must be >= {low}")
    return value


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default)
    if value not in choices:
        raise ConfigurationError(f"{name}={value!r}: choose {' or '.join(map(repr, choices))}")
    return value


Derive = Callable[[Mapping[str, Any]], Any]


def setting(
    env: str,
    default: Any,
    doc: str,
    *,
    low: float | str | None = None,
    high: float | None = None,
    choices: tuple[str, ...] = (),
    factory: Callable[[], Any] | None = None,
    derive: Derive | None = None,
    shown: str | None = None,
) -> Any:
    """A field read from `env`.

    default: its value when `env` is unset (None: an optional string; empty counts as unset).
    low, high: bounds for a number (low 0 unless given; a str names an earlier field of the
    same section whose value is the bound). choices: the allowed strings. factory: the
    default computed per instance (it depends on ENRICHMENT_VAR_DIR). derive: when `env` is
    unset or empty, the default computed from the other fields' values. shown: the default
    as the docs print it, where the value alone would mislead (factory, derive).
    """
    meta = {"env": env, "doc": doc, "low": low, "high": high, "choices": choices}
    meta |= {"derive": derive, "shown": shown}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def section(cls: type, title: str) -> Any:
    """A field holding a section: read by its own fields, one table in the docs."""
    return field(default_factory=cls, metadata={"section": title})


def default_of(f: Field) -> Any:
    return f.default_factory() if f.default is MISSING else f.default


def read_fields(cls: type) -> dict[str, Any]:
    """Every field of a settings dataclass, from its variable or else its default.

    Derived defaults are filled in last, from the values read before them.
    """
    values: dict[str, Any] = {}
    derived = []
    for f in fields(cls):
        if "section" in f.metadata:
            values[f.name] = f.default_factory().from_env()
        elif f.metadata.get("derive") and not os.environ.get(f.metadata["env"]):
            derived.append(f)
        else:
            values[f.name] = read_var(f, default_of(f), values)
    for f in derived:
        values[f.name] = f.metadata["derive"](values)
    return values


def read_var(f: Field, default: Any, earlier: Mapping[str, Any]) -> Any:
    """One variable, parsed like its default: flag ("1"), whole number, number or string."""
    meta = f.metadata
    name, low, high = meta["env"], meta["low"], meta["high"]
    if isinstance(low, str):
        low = earlier[low]
    if isinstance(default, bool):
        return env_str(name, "1" if default else "0") == "1"
    if isinstance(default, int):
        return env_int(name, default, low=int(low or 0))
    if isinstance(default, float):
        return env_float(name, default, low=low or 0.0, high=high)
    if meta["choices"]:
        return env_choice(name, default, meta["choices"])
    if default is None:
        return os.environ.get(name) or None
    return env_str(name, default)


class FromEnv:
    """Gives a settings dataclass `from_env()`: each field from its variable."""

    @classmethod
    def from_env(cls) -> Self:
        return cls(**read_fields(cls))
