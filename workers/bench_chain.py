"""The benchmark's baseline: a bare chain of three no-op tasks (`bench.noop`).

`enrichment bench` (P1) compares the enrichment pipeline with this chain. Workers started
by the bench run `celery -A workers worker -I workers.bench_chain`, so both kinds of chain
share one app, one worker and identical settings. It lives here, not in `enrichment/`,
because it is Celery code.
"""

from __future__ import annotations

from typing import Any

from celery import chain, shared_task

# Redis key counting finished chains: the last hop of every chain INCRs it.
DONE_KEY = "bench:noop:done"

_redis_client: Any = None


@shared_task(name="bench.noop", ignore_result=True)
def noop(chain_id: int, last: bool = False) -> int:
    """One hop of the baseline chain; the last hop counts the chain as done (one INCR)."""
    if last:
        _counter().incr(DONE_KEY)
    return chain_id


def _counter() -> Any:
    global _redis_client
    if _redis_client is None:  # per process, after fork
        import redis

        from enrichment.core.settings import get_settings

        _redis_client = redis.Redis.from_url(get_settings().broker_url)
    return _redis_client


def send_noop_chains(n: int) -> None:
    """Enqueue n chains noop(i) -> noop(i) -> noop(i, last=True), numbered 0..n-1."""
    for i in range(n):
        chain(noop.si(i), noop.si(i), noop.si(i, last=True)).apply_async()
