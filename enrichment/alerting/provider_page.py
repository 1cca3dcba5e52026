"""One page per provider outage, not thousands of escalations: the `provider_down` alert.

While a provider breaker is open (core/breaker.py) the fleet holds a CRITICAL alert of its
own, not a tenant's, routed like every CRITICAL (routing.py): PagerDuty (the global routing
key) and Slack (the global webhook). Its text says the cause in plain words and what to do.
It triggers once when the breaker opens and resolves when the breaker closes, on the same
dedup key (`enrichment/fleet/provider_down/<provider>/<model>`); the breaker row's
`page_open` remembers that a resolve is owed, so a monitor run killed mid-way sends it again.
Run by every monitor tick.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import structlog
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from enrichment.alerting import pagerduty, push, slack
from enrichment.alerting.alerts import CRITICAL, Notification
from enrichment.core import breaker, breaker_store, db
from enrichment.core.breaker_store import ProviderBreaker
from enrichment.core.faults import PLAIN
from enrichment.core.models import utcnow
from enrichment.core.settings import Settings

log = structlog.get_logger(__name__)
METRIC = "provider_down"
LOCK_KEY = 0x656E7270  # "enrp": one paging run at a time (core.db.exclusive)


@dataclass(frozen=True)
class Page:
    """One provider_down notification and how its sending went (error None: delivered)."""

    provider: str
    model: str
    kind: str  # "firing" or "resolved"
    text: str
    error: str | None


def cause_text(b: breaker.Breaker) -> str:
    return PLAIN.get(b.cause or "", f"the provider failed ({b.cause})")


def describe(b: breaker.Breaker, waiting: int, now: datetime) -> str:
    """'paused since 02:14: the API key was refused (401): rotate ...; 1,240 records waiting;
    0 retries spent' (the status line and the page's text)."""
    if b.is_closed:
        return f"{b.provider} {b.model}: calling"
    since = f"{b.opened_at:%H:%M} UTC" if b.opened_at else "now"
    probe = "a probe in flight" if b.state == breaker.HALF_OPEN else "next probe"
    due_s = max(0, int(((b.probe_at or now) - now).total_seconds()))
    return (
        f"{b.provider} {b.model}: paused since {since}: {cause_text(b)}; {waiting:,} records"
        f" waiting; 0 retries spent ({probe} in {due_s} s)"
    )


def paused_lines(
    conn, settings: Settings, now: datetime, *, tenant_id: int | None = None
) -> list[str]:
    """One line per breaker that is not closed, counting the records it holds back (one
    tenant's, for that tenant's status); [] while every provider is called."""
    paused = [b for b in breaker_store.load_all(conn) if not b.is_closed]
    if not paused:
        return []
    waiting = breaker_store.waiting_records(conn, settings, tenant_id)
    return [describe(b, waiting, now) for b in paused]


class BreakerCollector:
    """/metrics: enrichment_provider_breaker_state{provider,model} (0 closed, 1 half-open,
    2 open) and enrichment_provider_waiting_records{provider,model} (records due now that
    the open breaker holds back; 0 while closed)."""

    def __init__(self, factory: sessionmaker[Session], settings: Settings) -> None:
        self.factory, self.settings = factory, settings

    def collect(self):
        with self.factory() as session:
            conn = session.connection()
            rows = breaker_store.load_all(conn)
            held = any(not b.is_closed for b in rows)
            waiting = breaker_store.waiting_records(conn, self.settings) if held else 0
        state = GaugeMetricFamily(
            "enrichment_provider_breaker_state",
            "The AI provider's breaker: 0 closed, 1 half-open (a probe in flight), 2 open",
            labels=["provider", "model"],
        )
        held_back = GaugeMetricFamily(
            "enrichment_provider_waiting_records",
            "Records due now that the provider's open breaker holds back",
            labels=["provider", "model"],
        )
        for b in rows:
            state.add_metric([b.provider, b.model], breaker.STATE_VALUE[b.state])
            held_back.add_metric([b.provider, b.model], 0 if b.is_closed else waiting)
        yield state
        yield held_back


def run(factory: sessionmaker[Session], settings: Settings, *, now: datetime | None = None):
    """Trigger for each open breaker not paged yet; resolve for each closed one still paged.
    Returns the pages attempted. One run at a time in the fleet (two beats' monitors would
    otherwise both read "not paged yet" and page twice): a run that finds another at it
    returns no page."""
    with factory() as session:
        engine = session.get_bind()
    with db.exclusive(engine, LOCK_KEY) as mine:
        return _run(factory, settings, now or utcnow()) if mine else []


def _run(factory: sessionmaker[Session], settings: Settings, now: datetime) -> list[Page]:
    with factory() as session:
        rows = session.execute(ProviderBreaker.__table__.select()).mappings().all()
        waiting = breaker_store.waiting_records(session.connection(), settings) if rows else 0
    pages = []
    for row in rows:
        b = breaker.Breaker(**{k: row[k] for k in breaker_store.FIELDS})
        if b.is_closed == (not row["page_open"]):
            continue  # nothing owed: closed and resolved, or open and paged
        kind = "resolved" if b.is_closed else "firing"
        text = describe(b, waiting, now) if kind == "firing" else f"{b.provider} {b.model} resumed"
        error = _send(b, kind, text, waiting, settings, now)
        if error is None:
            with factory.begin() as session:
                session.execute(
                    update(ProviderBreaker)
                    .where(ProviderBreaker.provider == b.provider, ProviderBreaker.model == b.model)
                    .values(page_open=kind == "firing")
                )
        log.warning("provider_down." + kind, provider=b.provider, model=b.model, error=error)
        pages.append(Page(b.provider, b.model, kind, text, error))
    return pages


def _send(
    b: breaker.Breaker, kind: str, text: str, waiting: int, settings: Settings, now: datetime
) -> str | None:
    """Both channels; the joined errors of the ones that may succeed on a later tick (None:
    delivered, or nothing configured: a missing receiver is not retried every tick)."""
    errors = []
    config, private = settings.routing.pagerduty, settings.webhooks.allow_private
    note = Notification(
        "fleet", kind, METRIC, CRITICAL, float(waiting), None, " records waiting", b.opened_at
    )
    key = pagerduty.routing_key_for({}, settings.routing.pagerduty)
    if key is not None:
        body = pagerduty.event(note, key, now=now)
        body["dedup_key"] = f"enrichment/fleet/{METRIC}/{b.provider}/{b.model}"
        if kind == "firing":
            body["payload"]["summary"] = f"[enrichment] CRITICAL provider down: {text}"[:1024]
            body["payload"]["custom_details"]["what_to_do"] = cause_text(b)
        errors.append(_try(lambda: pagerduty.send(body, config, allow_private=private)))
    url = slack.webhook_for({}, settings.slack)
    if url is not None:
        head = ":red_circle: *CRITICAL* provider down" if kind == "firing" else "*RESOLVED*"
        message = {"text": f"[enrichment] {head}: {text}"}
        errors.append(_try(lambda: slack.post(url, message, settings.slack, allow_private=private)))
    return "; ".join(e for e in errors if e) or None


def _try(send) -> str | None:
    try:
        send()
    except push.PushRejected as exc:  # 4xx: sending it again cannot help
        log.error("provider_down.rejected", error=str(exc))
    except push.PushError as exc:
        return str(exc)
    return None
