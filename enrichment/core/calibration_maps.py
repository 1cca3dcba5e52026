"""Calibration maps in the database: per tenant and source (provider, model, prompt
version), each version of the map from a model's confidence to the probability that a person
agrees, every version kept (issue 24). Fitted by reviews/refit.py on the audit sample
(reviews/stats.py `fit_map`); read here by a classify stage, which stores the calibrated value
and the map's version beside the raw confidence.

A source with no map (fewer reviews than a map needs) is "uncalibrated": its records keep
NULL in `ai_calibrated_confidence` and the automation decision compares the raw confidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, ForeignKey, Integer, String, UniqueConstraint, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from enrichment.core.models import Base, JSONType, UTCDateTime, utcnow

MAP_VERSION = 1  # the CalibrationMap's form; a stored map of another form is refitted

Source = tuple[str, str, str]  # (provider, model, prompt_version); "" for an unknown part


@dataclass(frozen=True)
class CalibrationMap:
    """Raw confidence -> P(a person agrees): linear between the breakpoints x -> y, flat
    beyond them. JSON-safe through `to_json` / `from_json`."""

    x: tuple[float, ...]
    y: tuple[float, ...]
    n: int  # reviews it was fitted on
    fitted_at: str  # ISO 8601, UTC
    version: int = MAP_VERSION

    def apply(self, confidence: float) -> float:
        return float(np.interp(confidence, self.x, self.y))

    def to_json(self) -> dict:
        return {**asdict(self), "x": list(self.x), "y": list(self.y)}

    @classmethod
    def from_json(cls, data: Mapping) -> CalibrationMap:
        return cls(**{**data, "x": tuple(data["x"]), "y": tuple(data["y"])})


class StoredMap(Base):
    """One version of one tenant's map for one source."""

    __tablename__ = "calibration_maps"
    __table_args__ = (
        UniqueConstraint(
            "tenant_id",
            "provider",
            "model",
            "prompt_version",
            "version",
            name="uq_calibration_maps_source_version",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    provider: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(128))
    prompt_version: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)  # 1, 2, ... per tenant and source
    breakpoints: Mapped[dict[str, Any]] = mapped_column(JSONType)  # CalibrationMap.to_json()
    reviews: Mapped[int] = mapped_column(Integer)
    fitted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def source(self) -> Source:
        return (self.provider, self.model, self.prompt_version)

    @property
    def map(self) -> CalibrationMap:
        return CalibrationMap.from_json(self.breakpoints)


@dataclass(frozen=True)
class Current:
    """A source's latest map and its version."""

    version: int
    map: CalibrationMap


def source_of(parts: Mapping[str, Any] | None) -> Source:
    """The key of an `ai_source` entry ({"provider", "model", "prompt_version"})."""
    parts = parts or {}
    widths = {"provider": 64, "model": 128, "prompt_version": 64}  # the columns' lengths
    return tuple(str(parts.get(k) or "")[:w] for k, w in widths.items())


def latest_maps(conn: Connection | Session, tenant_id: int) -> dict[Source, Current]:
    """The tenant's latest map per source (one indexed query; a few rows per tenant)."""
    m = StoredMap
    newest = (
        select(m.provider, m.model, m.prompt_version, func.max(m.version).label("version"))
        .where(m.tenant_id == tenant_id)
        .group_by(m.provider, m.model, m.prompt_version)
        .subquery()
    )
    rows = conn.execute(
        select(m.provider, m.model, m.prompt_version, m.version, m.breakpoints)
        .join(
            newest,
            (m.provider == newest.c.provider)
            & (m.model == newest.c.model)
            & (m.prompt_version == newest.c.prompt_version)
            & (m.version == newest.c.version),
        )
        .where(m.tenant_id == tenant_id)
    )
    return {
        (r.provider, r.model, r.prompt_version): Current(
            r.version, CalibrationMap.from_json(r.breakpoints)
        )
        for r in rows
        if (r.breakpoints or {}).get("version") == MAP_VERSION
    }


def calibrate(
    maps: Mapping[Source, Current], source: Mapping[str, Any] | None, confidence: float
) -> tuple[float | None, int | None]:
    """(calibrated confidence, map version), or (None, None): uncalibrated."""
    current = maps.get(source_of(source))
    if current is None:
        return None, None
    return current.map.apply(confidence), current.version


def decisive(raw: float | None, calibrated: float | None) -> float | None:
    """The confidence the automation decision compares with the threshold: the calibrated
    one when the record has it, else the model's own."""
    return raw if calibrated is None else calibrated


def words(raw: float | None, calibrated: float | None, version: int | None) -> str | None:
    """ "calibrated 0.71 (map v3)", "uncalibrated", or None before a confidence."""
    if raw is None:
        return None
    if calibrated is None:
        return "uncalibrated"
    return f"calibrated {calibrated:.2f} (map v{version})"
