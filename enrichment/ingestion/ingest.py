"""Load orders and exception records from JSONL, one line = one record with its order.

Every line is validated on its own (`lines`: strict Pydantic, bytes decoded per line so one
bad byte rejects one line) and written all or nothing (`write`): a bad line is reported with
its 1-based number and a reason, and never stops the load or leaves half a line behind.
Good lines go in chunks of CHUNK_SIZE, one transaction and one bulk INSERT each.

Replaying a feed is safe: a line already stored as given is `unchanged`. A line whose stored
exception's inputs differ is `updated` (see `plan` for when that reopens an enriched record).
The API's records route goes through the same validation and write path (`items`).

A file line's order payload is superseded only by a later line of the same chunk: a file
that gives one order different payloads in lines more than CHUNK_SIZE apart reports the
earlier line `updated` again on a replay.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from sqlalchemy.orm import Session, sessionmaker

from enrichment.core import tenants
from enrichment.core.crashpoints import crash_point
from enrichment.core.settings import RecordLimits, get_settings
from enrichment.ingestion.lines import (
    MAX_EVENTS,
    MAX_LINE_BYTES,
    MAX_NOTES_CHARS,
    Good,
    LineError,
    LineIn,
    Seen,
    parse_line,
)
from enrichment.ingestion.plan import CREATED, NOT_REENRICHED, REJECTED, UPDATED, ItemResult
from enrichment.ingestion.write import write_chunk

__all__ = [
    "CHUNK_SIZE",
    "MAX_EVENTS",
    "MAX_LINE_BYTES",
    "MAX_NOTES_CHARS",
    "IngestReport",
    "LineIn",
    "ingest_file",
    "parse_line",
]

log = structlog.get_logger(__name__)

CHUNK_SIZE = 500


@dataclass
class IngestReport:
    """Lines `created`, `updated` (of which `reopened` for re-enrichment, and `not_reenriched`
    already enriched and left so) and `unchanged` (stored exactly as given: a replay);
    `rejected` as (1-based line number, reason)."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    reopened: int = 0
    not_reenriched: int = 0

    @property
    def loaded(self) -> int:
        """Lines written (created + updated), for callers that count what went in."""
        return self.created + self.updated

    def add(self, results: Iterable[ItemResult]) -> None:
        for r in results:
            if r.result == REJECTED:
                self.rejected.append((r.pos, r.reason or "rejected"))
            elif r.result == CREATED:
                self.created += 1
            elif r.result == UPDATED:
                self.updated += 1
                self.reopened += r.reopened
                self.not_reenriched += r.reason == NOT_REENRICHED
            else:
                self.unchanged += 1


def _read(path: Path) -> Iterator[tuple[int, bytes]]:
    """Non-blank lines in binary with their 1-based numbers (blank lines are skipped)."""
    with path.open("rb") as f:
        for line_no, raw in enumerate(f, start=1):
            raw = raw.rstrip(b"\r\n")
            if raw.strip():
                yield line_no, raw


class _Tenants:
    """Tenant name -> id, looked up once per name; created only when allowed."""

    def __init__(self, factory: sessionmaker[Session], *, create: bool) -> None:
        self.factory, self.create = factory, create
        self.ids: dict[str, int | None] = {}

    def id_for(self, name: str) -> int:
        if name not in self.ids:
            self.ids[name] = self._load(name)
        if (found := self.ids[name]) is None:
            raise LineError(
                f"unknown tenant {name!r} (use --create-tenants to create it)", "tenant"
            )
        return found

    def _load(self, name: str) -> int | None:
        with self.factory.begin() as session:
            if self.create:
                return tenants.get_or_create(session, name).id
            tenant = tenants.by_name(session, name)
            return tenant.id if tenant is not None else None


def ingest_file(
    factory: sessionmaker[Session],
    path: str | Path,
    *,
    create_tenants: bool = False,
    limits: RecordLimits | None = None,
) -> IngestReport:
    """Load `path` (JSONL). Unknown tenants are rejected unless `create_tenants` (False);
    a record over `limits` (default: the settings' record limits) is rejected with why.

    Returns how many lines were created, updated or already stored and, sorted by line
    number, why the others were not.
    """
    report, chunk, seen = IngestReport(), [], Seen("line")
    known = _Tenants(factory, create=create_tenants)
    limits = limits or get_settings().record_limits
    for line_no, raw in _read(Path(path)):
        try:
            line = parse_line(raw, line_no, limits=limits)
            good = Good(line_no, line, known.id_for(line.tenant))
            seen.check(good)
            chunk.append(good)
        except LineError as exc:
            report.rejected.append((line_no, str(exc)))
        if len(chunk) >= CHUNK_SIZE:
            report.add(write_chunk(factory, chunk))
            # A kill between chunks keeps the committed ones (due at once, unleased);
            # replaying the file reports them unchanged and writes the rest.
            crash_point("ingest.between_chunks")
            chunk = []
    report.add(write_chunk(factory, chunk))
    report.rejected.sort()
    log.info(
        "ingest.done",
        path=str(path),
        created=report.created,
        updated=report.updated,
        reopened=report.reopened,
        unchanged=report.unchanged,
        rejected=len(report.rejected),
    )
    return report
