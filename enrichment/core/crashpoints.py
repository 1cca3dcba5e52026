"""Crash points: a test hook that kills this process at a named boundary between commits.

TEST HOOK ONLY. Never set ENRICHMENT_CRASH_POINTS in production: an armed point SIGKILLs
the process that reaches it (a worker, the API, beat), on purpose.

`crash_point("batch_submit.after_claim")` does nothing unless that name is in the
comma-separated ENRICHMENT_CRASH_POINTS, read at each call (no import-time state), so a
test can run the real code in a subprocess with one point armed and watch it die
(returncode -9) exactly where a deploy, an OOM kill or a lost node would stop it. Unarmed,
a call is one environment lookup.

Each point sits after a commit and before the next one; the names are
`<operation>.<where>` and tests/test_crash_points.py shows what each leaves behind and how
it is recovered. One place is not a boundary: `review.before_commit` sits inside the
review's single transaction, to show that a kill there leaves nothing half-written.
"""

from __future__ import annotations

import os
import signal
import sys

ENV_VAR = "ENRICHMENT_CRASH_POINTS"


def armed(name: str) -> bool:
    """True when `name` is one of ENRICHMENT_CRASH_POINTS' comma-separated names."""
    raw = os.environ.get(ENV_VAR)
    return bool(raw) and name in (n.strip() for n in raw.split(","))


def crash_point(name: str) -> None:
    """SIGKILL this process if `name` is armed: no handler, finally or atexit runs, as with
    a real kill. The name goes to stderr first, so a test can tell this kill from another."""
    if not armed(name):
        return
    sys.stderr.write(f"crash_point: {name}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)
