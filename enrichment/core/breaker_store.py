"""The provider breakers' table and the reads and writes every process shares.

Why PostgreSQL and not Redis: the database is already the fleet's scheduler, and the breaker
is read where the scheduling is decided (the sweep's claim, the batch submitter) and written
with the attempt rows that its failure ratio is counted from; the embedded default has no
Redis at all; and a breaker row survives a broker restart, which an open breaker must
(Redis is the broker here, and restarting it must not close the breaker on a dead key).
Writes happen only on a fleet fault or a state change, never on a healthy call; a worker
reads the row before each call (`gate`).
"""

from __future__ import annotations

from dataclasses import asdict, fields
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, Float, Integer, String, and_, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from enrichment.core import breaker
from enrichment.core.breaker import Breaker
from enrichment.core.due import due_unclaimed
from enrichment.core.faults import FLEET, PAUSED, RATIO, SOFT, Cause
from enrichment.core.models import Base, EnrichmentAttempt, UTCDateTime, utcnow
from enrichment.core.models import ExceptionRecord as R
from enrichment.core.provider import Provider
from enrichment.core.settings import Settings
from enrichment.core.settings_sections import BreakerConfig

log = structlog.get_logger(__name__)


class ProviderBreaker(Base):
    """One provider and model's breaker (core/breaker.py). page_open: a provider_down page
    was sent for the outage and its resolve is owed (alerting/provider_page.py)."""

    __tablename__ = "provider_breakers"

    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default=breaker.CLOSED)
    cause: Mapped[str | None] = mapped_column(String(32))
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    probe_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    probe_interval_s: Mapped[float] = mapped_column(Float, default=0.0)
    probe_record_id: Mapped[int | None] = mapped_column(Integer)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    page_open: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


_T = ProviderBreaker
FIELDS = [f.name for f in fields(Breaker)]


def key_for(settings: Settings, model: str | None = None) -> tuple[str, str]:
    """(provider, model) of the fleet's configured provider, or of `model` on it."""
    if settings.ai_provider == "anthropic":
        return "anthropic", model or settings.anthropic_model
    return settings.ai_provider, model or settings.ai_provider


def load(conn: Connection, key: tuple[str, str], *, lock: bool = False) -> Breaker:
    """The breaker of `key` (closed when it has no row yet); `lock`: FOR UPDATE, after
    making sure the row exists, for a read-modify-write."""
    if lock:
        _ensure(conn, key)
    query = select(*(_T.__table__.c[f] for f in FIELDS)).where(
        _T.provider == key[0], _T.model == key[1]
    )
    row = conn.execute(query.with_for_update() if lock else query).first()
    return Breaker(**row._mapping) if row is not None else Breaker(*key)


def load_all(conn: Connection) -> list[Breaker]:
    rows = conn.execute(select(*(_T.__table__.c[f] for f in FIELDS))).all()
    return [Breaker(**row._mapping) for row in rows]


def _ensure(conn: Connection, key: tuple[str, str]) -> None:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    values = {"provider": key[0], "model": key[1], "state": breaker.CLOSED, "updated_at": utcnow()}
    conn.execute(dialect.insert(_T).values(values).on_conflict_do_nothing())


def store(conn: Connection, old: Breaker, new: Breaker) -> None:
    """Write `new` over `old` (the caller holds the row lock) and log a change of state."""
    values = {k: v for k, v in asdict(new).items() if k not in ("provider", "model")}
    conn.execute(
        update(_T)
        .where(_T.provider == new.provider, _T.model == new.model)
        .values(**values, updated_at=utcnow())
    )
    if old.state != new.state:
        level = "warning" if new.state == breaker.OPEN else "info"
        getattr(log, level)(
            "breaker." + new.state,
            provider=new.provider,
            model=new.model,
            cause=new.cause or old.cause,
            probe_in_s=new.probe_interval_s,
        )


def is_closed(engine: Engine, settings: Settings) -> bool:
    """Whether the fleet's provider and model may be sent new work."""
    with engine.connect() as conn:
        return load(conn, key_for(settings)).is_closed


def learn(
    engine: Engine,
    settings: Settings,
    key: tuple[str, str],
    seen: Breaker,
    attempt: dict[str, Any],
) -> None:
    """What the breaker learns from one attempt: a fleet fault or a 400 counts toward
    opening it; an answer from the provider through a breaker that was not closed (the
    probe's) closes it, even one this record's content made unusable."""
    fault, now = attempt["fault"], utcnow()
    if fault in FLEET or fault == Cause.BAD_REQUEST:
        record_fault(engine, key, fault, settings.breaker, now)
    elif attempt.get("batch_id") is not None:
        return  # a batch result is the provider's past, not a probe's answer: it never closes
    elif attempt["outcome"] in ("completed", "failed") and not seen.is_closed:
        record_success(engine, key, now)


def record_fault(
    engine: Engine, key: tuple[str, str], cause: str, cfg: BreakerConfig, now: datetime
) -> Breaker:
    """Count a fleet fault (or a 400) against the breaker; open it when the rules say so.
    An open breaker is left alone without a lock: the fault changes nothing there."""
    with engine.connect() as conn:
        seen = load(conn, key)
    if seen.state == breaker.OPEN:
        return seen
    with engine.begin() as conn:
        current = load(conn, key, lock=True)
        faults, calls = window_counts(conn, key, now, cfg)
        new = breaker.on_fault(current, cause, faults, calls, now, cfg)
        if new != current:
            store(conn, current, new)
    return new


def record_success(engine: Engine, key: tuple[str, str], now: datetime) -> Breaker:
    """The probe's stage got a usable answer: close the breaker (when it is half-open)."""
    with engine.begin() as conn:
        current = load(conn, key, lock=True)
        new = breaker.on_success(current, now)
        if new != current:
            store(conn, current, new)
    return new


def window_counts(
    conn: Connection, key: tuple[str, str], now: datetime, cfg: BreakerConfig
) -> tuple[int, int]:
    """(calls failing for a ratio cause, calls) among the last `min_calls` interactive calls
    on this provider and model within `window_s`, from the attempt rows (a backward walk of
    ix_enrichment_attempts_created). A count window, not a time window: over a minute of
    traffic a busy fleet would spend as many calls failing as it had succeeded before the
    ratio tripped. Stages that never called (paused, held by our own rate limiter) are not
    calls, and Message Batch results are not either: they tell of the provider's state
    when the batch ran, not now."""
    A = EnrichmentAttempt
    since = now - timedelta(seconds=cfg.window_s)
    called = [
        A.created_at > since,
        A.provider == key[0],
        A.outcome.in_(("completed", "failed", "deferred")),
        A.fault.is_distinct_from(PAUSED),
        A.batch_id.is_(None),
    ]
    if key[0] == "anthropic":  # the local provider names no model per call
        called.append(A.model == key[1])
    recent = (
        select(A.fault).where(*called).order_by(A.created_at.desc()).limit(cfg.min_calls)
    ).subquery()
    failing = func.count().filter(recent.c.fault.in_(sorted(RATIO)))
    row = conn.execute(select(failing, func.count()).select_from(recent)).one()
    return int(row[0]), int(row[1])


def gate(conn: Connection, key: tuple[str, str]) -> Breaker:
    """The breaker a stage is about to call through, read fresh (one primary-key read in
    the connection that began the stage): only the calls already in flight when it opens
    reach the provider, never one per record (a cached "closed" would let one call per
    record through for the cache's lifetime)."""
    return load(conn, key)


def route(
    conn: Connection, settings: Settings, provider: Provider, record_id: int
) -> tuple[Provider, tuple[str, str], Breaker]:
    """Which provider a stage calls, through which breaker: the configured one while its
    breaker admits the record; while it is open for an overload (never for a refused key
    or a spend cap, which the fallback shares), the fallback model when one is set and its
    own breaker admits it (one hop); else the configured one, whose breaker then keeps the
    call back (`breaker.admits`)."""
    key = key_for(settings)
    seen = gate(conn, key)
    if breaker.admits(seen, record_id) or seen.cause not in SOFT:
        return provider, key, seen
    fallback = getattr(provider, "fallback", lambda: None)()
    if fallback is None:
        return provider, key, seen
    fallback_key = key_for(settings, fallback.model)
    fallback_seen = gate(conn, fallback_key)
    if not breaker.admits(fallback_seen, record_id):
        return provider, key, seen
    return fallback, fallback_key, fallback_seen


def fallback_open(conn: Connection, settings: Settings, primary: Breaker) -> bool:
    """Whether the sweep may claim while `primary` is open: it is open for an overload and
    the fallback model's breaker is closed."""
    model = settings.breaker.fallback_model
    if model is None or primary.cause not in SOFT or settings.ai_provider != "anthropic":
        return False
    return load(conn, key_for(settings, model)).is_closed


def waiting_records(conn: Connection, settings: Settings, tenant_id: int | None = None) -> int:
    """Records due now and not leased (all tenants', or one's): what an open breaker holds
    back (the sweep's claim would take them)."""
    now = utcnow()
    due = due_unclaimed(now, settings.max_retries)
    if tenant_id is not None:
        due = and_(due, R.tenant_id == tenant_id)
    return int(conn.execute(select(func.count()).select_from(R).where(due)).scalar_one())
