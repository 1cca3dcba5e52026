"""The one write of a stage's outcome: the record's new columns, its actions, its events and
the attempt row, landing together or not at all, behind the lease guard (`guard`).
`pipeline.run_stage` and the Message Batch paths (batches/submit.py, apply.py) call it."""

from __future__ import annotations

from contextlib import nullcontext
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    Connection,
    Select,
    Text,
    case,
    exists,
    func,
    insert,
    literal,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from enrichment.core import order_raise, outbox
from enrichment.core.models import (
    AWAITING_APPROVAL,
    ORDER,
    RECORDED,
    EnrichmentAttempt,
    ExceptionRecord,
    OutboxEvent,
    ResolutionAction,
    UTCDateTime,
    utcnow,
)
from enrichment.core.outbox import ACTION_REQUESTED
from enrichment.core.outcomes import StageRun, event_subject

_R = ExceptionRecord


def guard(record_id: int, tenant_id: int, lease_token: str, stamp: datetime | None) -> list:
    """The lease guard: the record is still this chain's, unescalated, at this stage."""
    return [
        _R.id == record_id,
        _R.tenant_id == tenant_id,
        _R.lease_token == lease_token,
        _R.escalated_at.is_(None),
        _R.last_enrichment_attempt.is_not_distinct_from(stamp),
    ]


def write(conn: Connection, run: StageRun, attempt: dict[str, Any]) -> bool:
    """The record's new columns, its actions, its events and the attempt row; False when the
    guard failed (the attempt is then recorded as stale and nothing else changes).

    PostgreSQL: one statement, one round trip (the update and the inserts are CTEs).
    SQLite (the embedded demo), which has no data-modifying CTEs: one short transaction.
    Either way a decision and its events land together or not at all."""
    guarded = (
        update(_R)
        .where(*guard(run.record_id, run.tenant_id, run.lease_token, run.started_at))
        .values(**run.writes, updated_at=utcnow())  # onupdate does not reach into a CTE
    )
    if run.record_type == ORDER:  # the exceptions it raises: core/order_raise.py
        return order_raise.write(conn, run, attempt, guarded)
    if conn.dialect.name == "postgresql":
        return _write_postgres(conn, run, attempt, guarded)
    with nullcontext() if conn.in_transaction() else conn.begin():  # the caller's, or one
        landed = conn.execute(guarded).rowcount == 1
        if landed:
            now = utcnow()
            events = [_event_row(run, t, d, now) for t, d in run.events]
            for action in run.actions:
                status = AWAITING_APPROVAL if action in run.awaiting else RECORDED
                stmt = sqlite.insert(ResolutionAction).values(
                    tenant_id=run.tenant_id, record_id=run.record_id, action=action, status=status
                )
                action_id = conn.execute(
                    stmt.on_conflict_do_nothing().returning(ResolutionAction.id)
                ).scalar()
                if action_id is not None and status == RECORDED:  # new and decided: an event
                    data = {**_action_base(run), "action_id": action_id, "action": action}
                    events.append(_event_row(run, ACTION_REQUESTED, data, now, action_id))
            if events:
                conn.execute(outbox.insert_events(events))
        conn.execute(
            insert(EnrichmentAttempt).values(
                {**attempt, "outcome": attempt["outcome"] if landed else "stale"}
            )
        )
    return landed


def _action_base(run: StageRun) -> dict[str, Any]:
    return {**event_subject(run), "label": run.ai_label}


def _event_row(
    run: StageRun,
    event_type: str,
    data: dict[str, Any],
    now: datetime,
    action_id: int | None = None,
) -> dict[str, Any]:
    return outbox.event_row(
        run.tenant_id, run.record_id, event_type, data, now=now, action_id=action_id
    )


_EVENT_TYPES = {c: OutboxEvent.__table__.c[c].type for c in outbox.COLUMNS}


def _event_select(row: dict[str, Any], order: int, **computed: Any) -> Select:
    """One event row as a SELECT of literals (in COLUMNS order), `computed` columns aside."""
    return select(
        *(
            computed[c].label(c) if c in computed else literal(v, _EVENT_TYPES[c]).label(c)
            for c, v in row.items()
        ),
        literal(order).label("ord"),
    )


def _write_postgres(conn: Connection, run: StageRun, attempt: dict[str, Any], guarded) -> bool:
    rec = guarded.returning(_R.id).cte("rec")
    stmt = postgresql.insert(EnrichmentAttempt).values(
        {**attempt, "outcome": case((exists(rec.select()), attempt["outcome"]), else_="stale")}
    )
    # Each event row is a SELECT over `rec` (or the new actions): no row when the guard failed.
    now = utcnow()
    sources = [_event_select(_event_row(run, t, d, now), 0).select_from(rec) for t, d in run.events]
    if run.actions:
        # Every column spelled out, as for the attempt.
        # Two arrays of one length unnest side by side: each action with its status.
        statuses = [AWAITING_APPROVAL if a in run.awaiting else RECORDED for a in run.actions]
        acts = select(
            literal(run.tenant_id),
            rec.c.id,
            func.unnest(literal(run.actions, ARRAY(Text))),
            func.unnest(literal(statuses, ARRAY(Text))),
            literal(utcnow(), UTCDateTime),
        )
        cols = ["tenant_id", "record_id", "action", "status", "created_at"]
        # The unique (record, action) key makes a re-run record nothing new (and no event).
        A = ResolutionAction
        new_acts = (
            postgresql.insert(A)
            .from_select(cols, acts)
            .on_conflict_do_nothing()
            .returning(A.id, A.action, A.status)
            .cte("acts")
        )
        stmt = stmt.add_cte(new_acts)
        row = _event_row(run, ACTION_REQUESTED, _action_base(run), now)
        data = literal(row["data"], _EVENT_TYPES["data"]).op("||")(
            func.jsonb_build_object("action_id", new_acts.c.id, "action", new_acts.c.action)
        )
        # An action awaiting approval has no event until a person approves it (decide.py).
        sources.append(
            _event_select(row, 1, action_id=new_acts.c.id, data=data)
            .select_from(new_acts)
            .where(new_acts.c.status == RECORDED)
        )
    if sources:
        rows = union_all(*sources).subquery("ev")
        # In decision order: the record's event first, then its actions' (ids follow order).
        ordered = select(*(rows.c[c] for c in outbox.COLUMNS)).order_by(
            rows.c.ord, rows.c.action_id
        )
        stmt = stmt.add_cte(outbox.insert_events(ordered).cte("events"))
    return conn.execute(stmt.returning(EnrichmentAttempt.outcome)).scalar_one() != "stale"
