"""What a shadow answered: a shadow variant of an experiment (core/experiments.py), or the
local model under a cascade, on one record's classify stage. Kept beside the live answer for
the experiment report and the cascade's calibration; never read by the record's fields,
actions or events."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Float, ForeignKey, Index, String, insert
from sqlalchemy.orm import Mapped, mapped_column

from enrichment.core.models import Base, UTCDateTime, utcnow
from enrichment.core.provider import Shadow


class ShadowAnswer(Base):
    __tablename__ = "shadow_answers"
    __table_args__ = (Index("ix_shadow_answers_tenant_variant", "tenant_id", "variant"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    record_id: Mapped[int] = mapped_column(
        ForeignKey("exception_records.id", ondelete="CASCADE"), index=True
    )
    stage: Mapped[str] = mapped_column(String(32))
    variant: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(64))
    prompt_version: Mapped[str | None] = mapped_column(String(32))
    label: Mapped[str] = mapped_column(String(32))
    confidence: Mapped[float] = mapped_column(Float)
    cost_usd: Mapped[float] = mapped_column(Float)
    latency_s: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def save(conn: Connection, tenant_id: int, record_id: int, stage: str, call: Any) -> None:
    """One row per shadow answer a stage's call carries (StageCall.shadows: classifications);
    nothing for a failure. Called once the stage's own write has landed."""
    shadows: Sequence[Shadow] = getattr(call, "shadows", ())
    rows = [
        {
            "tenant_id": tenant_id,
            "record_id": record_id,
            "stage": stage,
            "variant": s.variant,
            "provider": s.call.provider,
            "model": s.call.model,
            "prompt_version": s.call.prompt_version,
            "label": str(s.call.result.label),
            "confidence": float(s.call.result.confidence),
            "cost_usd": s.call.usage.cost_usd,
            "latency_s": s.latency_s,
            "created_at": utcnow(),
        }
        for s in shadows
    ]
    if rows:
        conn.execute(insert(ShadowAnswer), rows)
