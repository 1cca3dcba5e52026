"""Sending a tenant's due backlog as Message Batches (the package docstring has the story)."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Engine, insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from enrichment.batches.handback import hand_back_all
from enrichment.core import (
    breaker,
    breaker_store,
    demand,
    pipeline,
    record_limits,
    selection,
    stage_write,
    time_to_person,
)
from enrichment.core.batch_models import GIVEN_UP, IN_PROGRESS, SUBMITTING, Batch, BatchRecord
from enrichment.core.crashpoints import crash_point
from enrichment.core.due import chain_lease_s
from enrichment.core.errors import EnrichmentError
from enrichment.core.leases import released
from enrichment.core.models import ORDER, Tenant, utcnow
from enrichment.core.models import ExceptionRecord as R
from enrichment.core.outcomes import Outcome, OutcomeKind, finish_stage
from enrichment.core.settings import Settings
from enrichment.core.stages import Stage
from enrichment.core.tenant_settings import TenantSettings
from enrichment.providers.anthropic import AnthropicProvider

log = structlog.get_logger(__name__)

API_MAX_REQUESTS = 100_000
# A batch request's lease: the batch's 24 h expiry, then time to notice and apply. Given
# only in the transaction that stores the batch holding the record: until then a submit
# holds the chain's short lease, so a kill before the store costs at most that.
BATCH_LEASE_S = 26 * 3600.0
# Records per statement when a batch's leases are extended (bind parameters stay well
# under PostgreSQL's 65,535 per statement).
_EXTEND_SLICE = 10_000
_STAGE_CODE = {Stage.ANALYZE: "a", Stage.CLASSIFY: "c", Stage.RESOLVE: "r"}


def custom_id(record_id: int, stage: Stage, lease_token: str) -> str:
    """`r<record>-<a|c|r>-<10 hex of the lease token>`: within ^[a-zA-Z0-9_-]{1,64}$, and
    unique per record, stage and claim."""
    digest = hashlib.sha256(lease_token.encode()).hexdigest()[:10]
    return f"r{record_id}-{_STAGE_CODE[stage]}-{digest}"


@dataclass(frozen=True)
class Request:
    """One record's request in a batch, and what its result must match to be applied."""

    record_id: int
    stage: str
    lease_token: str
    started_at: datetime
    body: dict[str, Any]  # {"custom_id", "params"}, as sent

    @property
    def custom_id(self) -> str:
        return self.body["custom_id"]

    @property
    def size(self) -> int:
        return len(json.dumps(self.body, separators=(",", ":"))) + 1


def chunks(requests: list[Request], max_requests: int, max_bytes: int) -> list[list[Request]]:
    """Split into batches of at most `max_requests` requests and `max_bytes` of JSON each
    (less 1 KB for the envelope); a single request over the limit goes alone."""
    out: list[list[Request]] = []
    size = 0
    for request in requests:
        if not out or len(out[-1]) >= max_requests or size + request.size > max_bytes - 1024:
            out.append([])
            size = 0
        out[-1].append(request)
        size += request.size
    return out


def submit_due(
    factory: sessionmaker[Session],
    provider: AnthropicProvider,
    settings: Settings,
    *,
    now: datetime | None = None,
    to_chain: ToChain | None = None,
) -> list[int]:
    """Every tenant whose backlog goes by batch: claim it, begin each record's next stage,
    and send one batch per stage (split at the size limits). Returns the new batches' ids.
    A claimed record whose time to a person is shorter than a batch may take goes to a chain
    instead (`to_chain`; see `_urgent_to_chains`)."""
    config = settings.batches
    with factory() as s:
        tenants = s.execute(select(Tenant.id, Tenant.settings).order_by(Tenant.id)).all()
    made: list[int] = []
    for tenant_id, tenant_settings in tenants:
        own = TenantSettings.parse(tenant_settings)
        if own.batch_mode == "never":
            continue
        more_than = 0 if own.batch_mode == "always" else own.batch_min_records or config.min_records
        limit = min(config.max_requests, API_MAX_REQUESTS) * 3  # up to one batch per stage
        with factory.begin() as s:
            walk = demand.tenants_due(s, settings, now or utcnow(), more_than + 1, tenant_id)
            if sum(t.due for t in walk) <= more_than:
                continue
            # The chain's lease, not BATCH_LEASE_S: a kill before the batch is stored must
            # leave these records claimable as soon as a killed chain's would be (_store).
            lease_s = chain_lease_s(settings)
            report = selection.claim(
                s, settings, limit, tenant_id=tenant_id, now=now, lease_s=lease_s
            )
        crash_point("batch_submit.after_claim")
        claims = _urgent_to_chains(
            factory, settings, own, tenant_id, report.claims, to_chain=to_chain
        )
        made += submit_claims(factory, provider, settings, tenant_id, claims)
    return made


# What sends a claimed record's chain: (record id, lease token, countdown in seconds).
ToChain = Callable[[int, str, float], None]


def _urgent_to_chains(
    factory: sessionmaker[Session],
    settings: Settings,
    own: TenantSettings,
    tenant_id: int,
    claims: list[selection.Claim],
    *,
    to_chain: ToChain | None,
) -> list[selection.Claim]:
    """The claims whose records may wait in a Message Batch. A batch may hold a record 24 h,
    so a record whose time to a person is shorter (critical and high, by default) goes to a
    chain now, on the claim's chain lease; without `to_chain` (a direct call) its lease is
    given back instead."""
    short = time_to_person.short_severities(own.time_to_person_s, settings.reviews)
    if not claims:
        return claims
    # One claim, one token: its records are found by it, not by a list of ids. A watched
    # order always goes by chain: its analysis has no batch request, and its deadline is near.
    token = claims[0].lease_token
    urgent = or_(R.severity.in_(short), R.record_type == ORDER)
    urgent_of_claim = (R.tenant_id == tenant_id, R.lease_token == token, urgent)
    with factory.begin() as s:
        urgent = set(s.scalars(select(R.id).where(*urgent_of_claim)))
        if urgent and to_chain is None:
            s.execute(
                update(R).where(*urgent_of_claim).values(**released(), updated_at=R.updated_at)
            )
    if not urgent:
        return claims
    for claim in claims:
        if to_chain is not None and claim.record_id in urgent:
            to_chain(claim.record_id, claim.lease_token, claim.countdown_s)
    log.info("batch_submit.urgent_by_chain", records=len(urgent), chained=to_chain is not None)
    return [c for c in claims if c.record_id not in urgent]


def submit_claims(
    factory: sessionmaker[Session],
    provider: AnthropicProvider,
    settings: Settings,
    tenant_id: int,
    claims: list[selection.Claim],
) -> list[int]:
    """Begin the claimed records' next stages and send them, one batch per stage."""
    by_stage: dict[str, list[Request]] = defaultdict(list)
    idle: list[tuple[int, str]] = []
    with pipeline.autocommit(factory) as conn:
        engine = conn.engine  # the breaker learns on connections of its own (_send)
        for claim in claims:
            begun = pipeline.begin_stage(conn, settings, None, claim.record_id, claim.lease_token)
            if isinstance(begun, Outcome):
                if begun.kind == OutcomeKind.CONTINUE:  # nothing left to run: free it for the chain
                    idle.append((claim.record_id, claim.lease_token))
                continue
            run, ctx = begun
            refused = record_limits.refusal(ctx, settings.record_limits)
            if refused is not None:  # over the ingestion limits: escalated, never sent
                _, attempt = finish_stage(run, settings, refused, 0.0, provider.name)
                if stage_write.write(conn, run, attempt):
                    pipeline.log_landed(run)
                continue
            params = provider.request(run.stage.call, ctx)
            body = {"custom_id": custom_id(run.record_id, run.stage, run.lease_token)}
            body["params"] = params
            by_stage[run.stage].append(
                Request(run.record_id, run.stage, run.lease_token, run.started_at, body)
            )
        for record_id, token in idle:
            conn.execute(
                update(R)
                .where(R.id == record_id, R.tenant_id == tenant_id, R.lease_token == token)
                .values(**released(), updated_at=R.updated_at)
            )
    crash_point("batch_submit.after_begin")
    config = settings.batches
    made = []
    for stage, requests in by_stage.items():
        for chunk in chunks(requests, min(config.max_requests, API_MAX_REQUESTS), config.max_bytes):
            batch_id = _send(factory, engine, provider, settings, tenant_id, stage, chunk)
            if batch_id is not None:
                made.append(batch_id)
    return made


def _send(
    factory: sessionmaker[Session],
    engine: Engine,
    provider: AnthropicProvider,
    settings: Settings,
    tenant_id: int,
    stage: str,
    chunk: list[Request],
) -> int | None:
    """Store the batch ("submitting"), create it, then store the provider's id. A failed
    create gives the batch up and hands its records back (no retry burnt).

    A kill at any point is recovered: before the store, the records' chain lease runs out;
    after it, `apply.poll_and_apply` gives the "submitting" batch up once it is
    `apply.stale_submit_s` old and hands its records back. A create that returns after its
    batch was given up is cancelled: its records may be in another batch already."""
    stored = _store(factory, provider, tenant_id, stage, chunk)
    if stored is None:
        return None
    batch_id, held = stored
    crash_point("batch_submit.after_store")
    try:
        created = provider.create_batch([r.body for r in held])
    except EnrichmentError as failure:
        error = str(failure)
        handed = hand_back_all(factory, settings, batch_id, GIVEN_UP, error=error)
        # A refused key or an overload refuses every batch: the breaker pauses the submits.
        attempt = {"fault": getattr(failure, "cause", None), "outcome": "failed"}
        key = breaker_store.key_for(settings, provider.model)
        breaker_store.learn(engine, settings, key, breaker.Breaker(*key), attempt)
        log.warning("batch.submit_failed", batch=batch_id, stage=stage, error=error, handed=handed)
        return None
    crash_point("batch_submit.after_create")
    if not _mark_created(factory, batch_id, tenant_id, created):
        _cancel_late(provider, batch_id, created.id)
        return None
    log.info("batch.submitted", batch=batch_id, remote=created.id, stage=stage, n=len(held))
    return batch_id


def _store(
    factory: sessionmaker[Session],
    provider: AnthropicProvider,
    tenant_id: int,
    stage: str,
    chunk: list[Request],
) -> tuple[int, list[Request]] | None:
    """In one transaction: extend to BATCH_LEASE_S the lease of every record of `chunk` the
    claim still holds (its lease token), and store the batch ("submitting") with exactly
    those. Returns (batch id, the requests held); None when the claim holds none any more.

    One transaction, so no record is ever on the long lease without a batch row that hands
    it back, and none is put in a batch after another claim took it."""
    with factory.begin() as s:
        held_ids = _extend_leases(s, tenant_id, chunk)
        held = [r for r in chunk if r.record_id in held_ids]
        if not held:
            return None
        batch = Batch(
            tenant_id=tenant_id,
            stage=stage,
            model=provider.model,
            status=SUBMITTING,
            requests=len(held),
            succeeded=0,
            errored=0,
            expired=0,
            canceled=0,
        )
        s.add(batch)
        s.flush()
        rows = [
            {
                "batch_id": batch.id,
                "record_id": r.record_id,
                "tenant_id": tenant_id,
                "custom_id": r.custom_id,
                "lease_token": r.lease_token,
                "started_at": r.started_at,
            }
            for r in held
        ]
        s.execute(insert(BatchRecord), rows)
        return batch.id, held


def _extend_leases(s: Session, tenant_id: int, chunk: list[Request]) -> set[int]:
    """Extend the lease of the chunk's records still under their request's lease token;
    returns their ids. A claim has one token, so this is one statement per slice."""
    until = utcnow() + timedelta(seconds=BATCH_LEASE_S)
    by_token: dict[str, list[int]] = defaultdict(list)
    for r in chunk:
        by_token[r.lease_token].append(r.record_id)
    held: set[int] = set()
    for token, ids in by_token.items():
        for start in range(0, len(ids), _EXTEND_SLICE):
            stmt = (
                update(R)
                .where(R.id.in_(ids[start : start + _EXTEND_SLICE]))
                .where(R.tenant_id == tenant_id, R.lease_token == token)
                .values(lease_expires_at=until, updated_at=R.updated_at)
                .returning(R.id)
                .execution_options(synchronize_session=False)
            )
            held.update(s.scalars(stmt))
    return held


def _mark_created(
    factory: sessionmaker[Session], batch_id: int, tenant_id: int, created: Any
) -> bool:
    """Store the provider's id: "in_progress". False when the batch is no longer
    "submitting": the stale-submit path gave it up while the create was in flight."""
    with factory.begin() as s:
        marked = s.execute(
            update(Batch)
            .where(Batch.id == batch_id, Batch.tenant_id == tenant_id, Batch.status == SUBMITTING)
            .values(
                provider_batch_id=created.id,
                status=IN_PROGRESS,
                expires_at=created.expires_at or utcnow() + timedelta(hours=24),
            )
        )
        return marked.rowcount == 1


def _cancel_late(provider: AnthropicProvider, batch_id: int, remote_id: str) -> None:
    """Cancel a batch created after it was given up (its results would apply to nothing),
    best effort: what it already ran is paid for either way."""
    log.warning("batch.created_after_give_up", batch=batch_id, remote=remote_id)
    try:
        provider.cancel_batch(remote_id)
    except EnrichmentError as error:
        log.warning("batch.cancel_failed", batch=batch_id, remote=remote_id, error=str(error))
