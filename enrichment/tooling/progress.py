"""How far a fleet is through a set of exception records, and the one line that shows it.

The demo and the drill both poll `read_progress` and draw it with a `ProgressLine`: a bar
redrawn in place on a terminal, or a plain line every few seconds in a log. While records are
still open, the line says what the fleet is waiting for: records in flight, records waiting
on their retry backoff (and when the soonest is due), records due for the next sweep.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from enrichment.core.due import due_unclaimed, in_backoff
from enrichment.core.models import ExceptionRecord, utcnow
from enrichment.core.settings import get_settings

CLEAR_TO_EOL = "\x1b[K"


@dataclass(frozen=True)
class Progress:
    """Counts over a set of records: completed (enriched_at set), escalated (escalated_at
    set), retries (sum of enrichment_retry_count) and leased (a lease token held).

    Of the records not yet terminal: backoff (next_attempt_at still in the future: a retry
    or low-confidence recheck waiting its turn, leased or not: due.in_backoff), next_due_s
    (seconds until the soonest of those is due, None if there is none) and unclaimed (due
    now and not leased, a lease expired included: waiting for the next sweep, the monitor's
    due.due_unclaimed). The rest of the open records are in flight."""

    total: int
    completed: int
    escalated: int
    retries: int
    leased: int
    backoff: int = 0
    next_due_s: float | None = None
    unclaimed: int = 0

    @property
    def terminal(self) -> int:
        return self.completed + self.escalated

    @property
    def open(self) -> int:
        """Records neither enriched nor escalated."""
        return self.total - self.terminal

    @property
    def in_flight(self) -> int:
        """Open records that are due and leased: queued or being worked on right now."""
        return self.open - self.backoff - self.unclaimed

    @property
    def done(self) -> bool:
        """Every record terminal and none still leased."""
        return self.total > 0 and self.terminal == self.total and self.leased == 0


def read_progress(
    factory: sessionmaker[Session], *where: Any, max_retries: int | None = None
) -> Progress:
    """Progress over the records matching `where` (SQLAlchemy criteria; all records if none),
    in one aggregate query. `max_retries`: the fleet's (ENRICHMENT_MAX_RETRIES if None)."""
    R = ExceptionRecord
    now = utcnow()
    future = in_backoff(now)
    if max_retries is None:
        max_retries = get_settings().max_retries
    unclaimed = due_unclaimed(now, max_retries)
    query = select(
        func.count(),
        func.count(R.enriched_at),
        func.count(R.escalated_at),
        func.coalesce(func.sum(R.enrichment_retry_count), 0),
        func.count(R.lease_token),
        func.count().filter(future),
        func.min(R.next_attempt_at).filter(future),
        func.count().filter(unclaimed),
    ).where(*where)
    with factory() as s:
        row = s.execute(query).one()
    return Progress(*row[:6], _seconds_until(row[6], now), row[7])


def _seconds_until(at: datetime | None, now: datetime) -> float | None:
    return None if at is None else max(0.0, (at - now).total_seconds())


def render(p: Progress, elapsed_s: float, width: int = 40) -> str:
    """The progress line itself, without a line ending."""
    done = int(width * p.terminal / p.total) if p.total else 0
    bar = "#" * done + "." * (width - done)
    return (
        f"[{bar}] {p.terminal}/{p.total} terminal | completed {p.completed} "
        f"escalated {p.escalated} retries {p.retries} leased {p.leased} | {elapsed_s:5.1f}s"
        f"{waiting(p)}"
    )


def waiting(p: Progress) -> str:
    """What the open records wait for, e.g. " | 18 waiting on retry backoff (next in 12 s)";
    empty when nothing is open."""
    parts = []
    if p.in_flight > 0:
        parts.append(f"{p.in_flight} in flight")
    if p.backoff:
        soon = f" (next in {p.next_due_s:.0f} s)" if p.next_due_s is not None else ""
        parts.append(f"{p.backoff} waiting on retry backoff{soon}")
    if p.unclaimed:
        parts.append(f"{p.unclaimed} due, waiting for the next sweep")
    return " | " + ", ".join(parts) if parts else ""


class ProgressLine:
    """Draws progress: redrawn in place on a terminal; elsewhere (CI logs, pipes) a new line
    at most every `every_s` seconds, so a log is not flooded by every poll."""

    def __init__(self, *, every_s: float, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.tty = self.out.isatty()
        self.every_s = every_s
        self._last_s: float | None = None
        self._open = False  # a redrawn line is on screen without its line ending

    def draw(self, p: Progress, elapsed_s: float, *, force: bool = False) -> None:
        """Show `p`; off a terminal, only if `every_s` have passed (or `force`)."""
        if not (self.tty or force or self._due(elapsed_s)):
            return
        self._last_s = elapsed_s
        line = render(p, elapsed_s)
        if self.tty:  # a wrapped line cannot be redrawn in place: cut it at the edge
            line = line[: shutil.get_terminal_size().columns - 1]
        # Erase to the end of the line: the waiting part grows and shrinks between redraws.
        self.out.write("\r" + line + CLEAR_TO_EOL if self.tty else line + "\n")
        self.out.flush()
        self._open = self.tty

    def say(self, message: str) -> None:
        """Print `message` on a line of its own, below a redrawn progress line."""
        self.close()
        print(message, file=self.out, flush=True)

    def close(self) -> None:
        """End a redrawn line, so whatever is printed next starts on a new line."""
        if self._open:
            self.out.write("\n")
            self.out.flush()
            self._open = False

    def _due(self, elapsed_s: float) -> bool:
        return self._last_s is None or elapsed_s - self._last_s >= self.every_s
