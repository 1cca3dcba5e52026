"""P9 API under a flood: a quiet tenant's latency while another tenant floods the API (issue
22, finding 2: a burst of 20 from one tenant made another's health check take 29.6 s).

The API is served by uvicorn (one process, its defaults: ENRICHMENT_API_RPM 600, _BURST 60,
_CONCURRENCY 20) on a free port against the bench PostgreSQL and Redis. First the quiet tenant
alone sends one `GET /health` every 50 ms for a few seconds (the baseline); then
`--p9-clients` clients of the flooding tenant send back to back for `--p9-duration-s` while
the quiet tenant keeps its pace. The figures: the quiet tenant's p50 and p99 latency
(statistics.quantiles), every one of its answers, and the flooder's share of 429s.

One request per 50 ms is 1,200 a minute, over the default 600: the quiet tenant has its own
`api_rpm` of 1,800 (a tenant setting), so its 429s would only come from the flooder's.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import structlog

from enrichment.core import db, tenants
from enrichment.tooling.bench.common import Options, Row, Services, reset_data
from enrichment.tooling.processes import Proc, wait_for
from enrichment.tooling.redis_server import free_port

log = structlog.get_logger(__name__)

QUIET_EVERY_S = 0.05
QUIET_SETTINGS = {"api_rpm": 1800}
BASELINE_S = 3.0
HEALTH = "/api/enrichment/health/{}"


@dataclass
class Tally:
    """Answers by status, and the latency in seconds of each answer."""

    codes: Counter = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, code: int, latency_s: float) -> None:
        with self.lock:
            self.codes[code] += 1
            self.latencies_s.append(latency_s)


def percentiles_ms(latencies_s: list[float]) -> tuple[float, float]:
    """p50 and p99 in ms (statistics.quantiles, the 'inclusive' method: within the data)."""
    cuts = statistics.quantiles(latencies_s, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000


def _get(client: httpx.Client, path: str, tally: Tally) -> None:
    started = time.perf_counter()
    code = client.get(path).status_code
    tally.add(code, time.perf_counter() - started)


def _flood(base: str, key: str, until: float, tally: Tally) -> None:
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as client:
        while True:  # at least one request, however short the window
            _get(client, HEALTH.format("flood-3pl"), tally)
            if time.perf_counter() >= until:
                return


def _quiet(base: str, key: str, duration_s: float) -> Tally:
    """One request every QUIET_EVERY_S for duration_s, on a fixed schedule."""
    tally = Tally()
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as client:
        start = time.perf_counter()
        for i in range(max(2, int(duration_s / QUIET_EVERY_S))):
            time.sleep(max(0.0, start + i * QUIET_EVERY_S - time.perf_counter()))
            _get(client, HEALTH.format("quiet-3pl"), tally)
    return tally


def _serve(services: Services, port: int) -> Proc:
    args = [sys.executable, "-m", "uvicorn", "enrichment.api:app"]
    args += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    proc = Proc(args, services.env(), services.out_dir / "p9-api.log")
    wait_for(lambda: _answers(port), timeout_s=30, what="the API", proc=proc)
    return proc


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def measure(services: Services, opts: Options) -> dict:
    """The baseline and the flood, on a fresh API; the raw tallies."""
    reset_data(services)
    with db.session_factory(services.db_url).begin() as s:
        quiet_row, quiet_key = tenants.create_tenant(s, "quiet-3pl")
        quiet_row.settings = QUIET_SETTINGS
        keys = {"quiet-3pl": quiet_key, "flood-3pl": tenants.create_tenant(s, "flood-3pl")[1]}
    port = free_port()
    proc = _serve(services, port)
    base = f"http://127.0.0.1:{port}"
    try:
        alone = _quiet(base, keys["quiet-3pl"], min(BASELINE_S, opts.p9_duration_s))
        flood = Tally()
        until = time.perf_counter() + opts.p9_duration_s
        clients = [
            threading.Thread(target=_flood, args=(base, keys["flood-3pl"], until, flood))
            for _ in range(opts.p9_clients)
        ]
        for t in clients:
            t.start()
        quiet = _quiet(base, keys["quiet-3pl"], opts.p9_duration_s)
        for t in clients:
            t.join(timeout=opts.p9_duration_s + 60)
    finally:
        proc.stop()
    return {"alone": alone, "quiet": quiet, "flood": flood}


def bench_p9(services: Services, opts: Options) -> list[Row]:
    tallies = measure(services, opts)
    alone, quiet, flood = tallies["alone"], tallies["quiet"], tallies["flood"]
    p50, p99 = percentiles_ms(quiet.latencies_s)
    alone_p50, alone_p99 = percentiles_ms(alone.latencies_s)
    flood_total = sum(flood.codes.values())
    share_429 = flood.codes[429] / flood_total
    quiet_ok = set(quiet.codes) == {200}
    data = {
        "quiet_p50_ms": p50,
        "quiet_p99_ms": p99,
        "alone_p50_ms": alone_p50,
        "alone_p99_ms": alone_p99,
        "quiet_codes": dict(quiet.codes),
        "flood_codes": dict(flood.codes),
        "flood_429_share": share_429,
    }
    log.info("bench.p9", **{k: v for k, v in data.items() if not k.endswith("codes")})
    return [
        Row(
            f"P9 API: quiet tenant while {opts.p9_clients} clients of another flood"
            f" ({opts.p9_duration_s:g} s)",
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms; {len(quiet.latencies_s)} quiet requests,"
            f" all 200: {quiet_ok}; flooder {share_429:.0%} 429 of {flood_total}",
            f"alone p50 {alone_p50:.1f} ms, p99 {alone_p99:.1f} ms",
            f"{p99 / alone_p99:.2f}",
            "quiet: every answer 200",
            quiet_ok,
            data,
        )
    ]
