"""The report page and /docs in a real browser: Debian's Chromium driven by Playwright,
against the real API served by uvicorn on the test database. The assertions are about what
a person sees, not about the HTML source.

Chromium comes from apt (`.ci/run` installs it); `playwright install` is never run. A
missing browser fails the test, it does not skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page

from enrichment.core import tenants
from enrichment.core.models import EnrichmentAttempt, ExceptionRecord, Tenant, utcnow
from enrichment.core.monitor_models import Alert
from enrichment.metrics.monitor import run_monitor
from tests.browser import WAIT_MS, chromium, local_page, served
from tests.factories import make_record

SCREENSHOT = Path("var/report-page.png")
INJECTED = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


@pytest.fixture
def base_url(settings, factory) -> Iterator[str]:
    """The real app under uvicorn on a free 127.0.0.1 port, on the test database."""
    with served(settings) as url:
        yield url


@pytest.fixture
def browser():
    with chromium() as b:
        yield b


def open_page(browser, url: str, key: str | None = None) -> tuple[Page, list[str]]:
    """A fresh page that records every request and lets none leave 127.0.0.1."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    page, requested = local_page(browser, width=1360, headers=headers)
    page.goto(url, wait_until="load", timeout=WAIT_MS)
    return page, requested


@pytest.fixture
def tenant_key(factory, settings) -> str:
    """page-3pl: 60 confident labels, bands of 1 and 2 records, 2 escalations (one with an
    injected script in its reason and note), a firing alert, three snapshots, and $0.90 of
    its $1 daily budget spent today (an INFO notice)."""
    now = utcnow()
    with factory.begin() as s:
        tenant, key = tenants.create_tenant(s, "page-3pl", confidence_threshold=0.7)
        waiting = [
            make_record(s, tenant, created_at=now - timedelta(minutes=50)) for _ in range(12)
        ]
    run_monitor(factory, settings, now=now - timedelta(minutes=40))
    with factory.begin() as s:
        for rec in waiting[:8]:
            s.get(ExceptionRecord, rec.id).enriched_at = now - timedelta(minutes=35)
        for i in range(60):
            make_record(s, tenant, ai_label="OTHER", ai_confidence=0.92 + (i % 8) / 100,
                        created_at=now - timedelta(minutes=31, seconds=i),
                        enriched_at=now - timedelta(minutes=30))  # fmt: skip
    run_monitor(factory, settings, now=now - timedelta(minutes=20))
    with factory.begin() as s:
        _edge_cases(s, tenant, now)
    return key


def _edge_cases(s, tenant, now) -> None:
    s.get(Tenant, tenant.id).settings = {"daily_budget_usd": 1.0}
    spent = make_record(s, tenant, ai_label="DAMAGE", ai_confidence=0.35, enriched_at=now)
    s.add(EnrichmentAttempt(tenant_id=tenant.id, record_id=spent.id, stage="classification",
                            outcome="completed", latency_s=1.0, provider="local", cost_usd=0.9,
                            lease_token="t", created_at=now))  # fmt: skip
    for _ in range(2):
        make_record(s, tenant, ai_label="OTHER", ai_confidence=0.55, enriched_at=now)
    make_record(
        s, tenant, ai_label="OTHER", ai_confidence=0.41, escalated_at=now - timedelta(hours=2),
        escalation_reason="TransientError: provider timed out after 30 s (attempt=5)",
        enrichment_retry_count=5,
    ).external_id = "exc-timeout"  # fmt: skip
    make_record(
        s, tenant, escalated_at=now - timedelta(minutes=5), escalation_reason=INJECTED,
        notes=f"Customer wrote: {INJECTED}",
    ).external_id = "exc-injected"  # fmt: skip
    s.add(
        Alert(tenant_id=tenant.id, metric="escalated", severity="warning", state="firing",
              value=2.0, threshold=0.0, active_since=now - timedelta(hours=2))
    )  # fmt: skip


def test_the_report_page_as_an_operations_lead_sees_it(base_url, browser, tenant_key):
    page, requested = open_page(
        browser, f"{base_url}/api/enrichment/report/page-3pl.html", tenant_key
    )

    header = page.locator("header")
    assert page.locator("header .pill").inner_text() == "WARNING"
    # Styled under the CSP: its <style> carries the response's nonce (the warning colour).
    pill = page.locator("header .pill").evaluate("e => getComputedStyle(e).backgroundColor")
    assert pill == "rgb(180, 83, 9)"
    assert "Enrichment report: page-3pl" in header.inner_text()
    assert "More than 0 records escalated to a person: now 2 records" in header.inner_text()
    assert "escalated_warning" not in page.locator("body").inner_text()

    # Every non-empty confidence band is a visible bar with its count printed above it.
    heights = [b["height"] for b in _boxes(page, "rect.bar")]
    assert len(heights) == 10 and sum(h > 0 for h in heights) == 4
    assert min(h for h in heights if h > 0) >= 3
    assert page.locator("text.count").all_text_contents() == ["1", "1", "2", "60"]
    assert page.get_by_text("AI confidence", exact=True).count() == 1
    assert page.locator("polyline.line").count() == 2  # two trends: snapshots + live figure

    table = page.locator("section", has_text="Escalated to a person").locator("table")
    rows = table.locator("tbody tr").all_inner_texts()
    assert rows[0].startswith("exc-timeout")  # oldest escalation first
    assert "TransientError: provider timed out after 30 s" in rows[0]
    assert INJECTED in rows[1] and f"Customer wrote: {INJECTED}" in rows[1]
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("script").count() == 0

    alerts = page.locator("section", has_text="What to do").inner_text()
    assert "More than 0 records escalated to a person" in alerts and "firing" in alerts
    notices = page.locator("section", has_text="Notices").inner_text()
    assert "never sent to Slack or PagerDuty" in notices
    assert "AI spend today at 90 % of the daily budget ($0.90 of $1.00" in notices
    assert "AI spend today" not in page.locator("header").inner_text()  # no status change

    assert requested and all(urlsplit(u).hostname == "127.0.0.1" for u in requested)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)


def _boxes(page: Page, selector: str) -> list[dict]:
    return [loc.bounding_box() or {"height": 0.0} for loc in page.locator(selector).all()]


def test_docs_render_swagger_ui_from_this_server_only(base_url, browser):
    page, requested = open_page(browser, f"{base_url}/docs")

    title = page.locator(".swagger-ui .info .title")
    title.wait_for(state="visible", timeout=WAIT_MS)
    assert "Enrichment fleet API" in title.inner_text()
    assert page.locator(".opblock").count() >= 5  # the routes, read from /openapi.json
    assert all(urlsplit(u).hostname == "127.0.0.1" for u in requested), requested
