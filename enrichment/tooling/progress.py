"""How far a fleet is through a set of exception records, and the one line that shows it.

The demo and the drill both poll `read_progress` and draw it with a `ProgressLine`: a bar
redrawn in place on a terminal, or a plain line every few seconds in a log.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, TextIO

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from enrichment.core.models import ExceptionRecord


@dataclass(frozen=True)
class Progress:
    """Counts over a set of records: completed (enriched_at set), escalated (escalated_at
    set), retries (sum of enrichment_retry_count) and leased (a lease token held)."""

    total: int
    completed: int
    escalated: int
    retries: int
    leased: int

    @property
    def terminal(self) -> int:
        return self.completed + self.escalated

    @property
    def done(self) -> bool:
        """Every record terminal and none still leased."""
        return self.total > 0 and self.terminal == self.total and self.leased == 0


def read_progress(factory: sessionmaker[Session], *where: Any) -> Progress:
    """Progress over the records matching `where` (SQLAlchemy criteria; all records if none)."""
    R = ExceptionRecord
    query = select(
        func.count(),
        func.count(R.enriched_at),
        func.count(R.escalated_at),
        func.coalesce(func.sum(R.enrichment_retry_count), 0),
        func.count(R.lease_token),
    ).where(*where)
    with factory() as s:
        return Progress(*s.execute(query).one())


def render(p: Progress, elapsed_s: float, width: int = 40) -> str:
    """The progress line itself, without a line ending."""
    done = int(width * p.terminal / p.total) if p.total else 0
    bar = "#" * done + "." * (width - done)
    return (
        f"[{bar}] {p.terminal}/{p.total} terminal | completed {p.completed} "
        f"escalated {p.escalated} retries {p.retries} leased {p.leased} | {elapsed_s:5.1f}s"
    )


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
        self.out.write("\r" + line if self.tty else line + "\n")
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
