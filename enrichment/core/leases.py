"""A record's lease given back, in one shape for every path that frees a record.

A lease is the pair (`lease_token`, `lease_expires_at`) on `exception_records`: the token
guards every write of the chain that holds it, the expiry lets the sweep take the record back
from a chain that died. Released, both are NULL: no chain holds the record, and the next
claim takes it once it is due (`core/due.py`).
"""

from __future__ import annotations


def released() -> dict[str, None]:
    """The lease columns of a record no chain holds: `.values(**released())` or
    `run.writes.update(released())`."""
    return {"lease_token": None, "lease_expires_at": None}
