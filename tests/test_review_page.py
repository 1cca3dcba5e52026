"""The review page as a person uses it: Debian's Chromium driven by Playwright against the
real API under uvicorn on the test database. Sign in with the reviewer key, see the queue,
decide a record from the keyboard, and the page's guards: CSRF, escaping, tenant scoping,
sign-out and session expiry (the server-side
sessions' own tests: test_review_sessions.py).

Chromium comes from apt (`.ci/run` installs it); `playwright install` is never run. A
missing browser fails the test, it does not skip.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import structlog
from playwright.sync_api import Page
from sqlalchemy import select

from enrichment.api import review_session
from enrichment.core import reviewers, tenants
from enrichment.core.models import EnrichmentAttempt, ExceptionRecord, Review, utcnow
from enrichment.core.settings import ReviewConfig
from tests.browser import chromium, local_page, served
from tests.conftest import with_settings
from tests.factories import make_record

SCREENSHOTS = Path("var")
HOSTILE = (
    '<script>alert("pwned"); window.__pwned = 1</script><img src=x onerror="window.__pwned=2">'
)


@pytest.fixture
def review_settings(settings):
    return with_settings(settings, reviews=ReviewConfig(secret="test-review-secret"))


@pytest.fixture
def base_url(review_settings, factory) -> Iterator[str]:
    """The real app under uvicorn on a free 127.0.0.1 port, on the test database."""
    with served(review_settings) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@dataclass
class Desk:
    """Tenant rev-a: two escalated records (one with a hostile note) and an audit sample;
    tenant rev-b: one escalated record."""

    a_key: str
    b_key: str
    timeout_id: int
    hostile_id: int
    hostile_ext: str
    b_record_id: int


@pytest.fixture
def desk(factory) -> Desk:
    now = utcnow()
    with factory.begin() as s:
        a, _ = tenants.create_tenant(s, "rev-a")
        b, _ = tenants.create_tenant(s, "rev-b")
        a_key = reviewers.add(s, a.id, "Ada Lovelace")[1]
        b_key = reviewers.add(s, b.id, "Bo")[1]
        timeout = make_record(
            s, a, escalated_at=now - timedelta(hours=3), enrichment_retry_count=5,
            escalation_reason="TransientError: provider timed out after 30 s (attempt=5)",
        )  # fmt: skip
        hostile = make_record(
            s, a, ai_label="DAMAGED_PACKAGE", ai_confidence=0.41,
            ai_analysis={"summary": "carrier reports a crushed box", "risk": "high"},
            escalated_at=now - timedelta(hours=1), notes=f"Customer wrote: {HOSTILE}",
            escalation_reason="confidence stayed below 0.7 after all retries",
        )  # fmt: skip
        s.add(
            EnrichmentAttempt(tenant_id=a.id, record_id=hostile.id, stage="classification",
                              outcome="low_confidence", error=None, latency_s=0.8,
                              provider="local", created_at=now - timedelta(hours=2))
        )  # fmt: skip
        make_record(s, a, ai_label="PICK_DELAY", ai_confidence=0.93, audit_sample=True,
                    enriched_at=now - timedelta(minutes=30))  # fmt: skip
        other = make_record(s, b, escalated_at=now, notes="rev-b's private note")
    return Desk(a_key, b_key, timeout.id, hostile.id, hostile.external_id, other.id)


def sign_in(page: Page, base_url: str, tenant: str, key: str):
    """Sign in with a reviewer's own key: the page has no name field (the key names them)."""
    page.goto(f"{base_url}/review/{tenant}/login")
    page.get_by_label("Your reviewer key").fill(key)
    with page.expect_navigation() as nav:
        page.get_by_role("button", name="Sign in").click()
    return nav.value


def tab_to(page: Page, selector: str, *, presses: int = 80) -> None:
    """Press Tab until `selector` has the focus (bounded: the tab order must reach it)."""
    target = page.locator(selector)
    for _ in range(presses):
        if target.evaluate("el => el === document.activeElement"):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{selector} never got the focus after {presses} tabs")


def test_a_reviewer_decides_an_escalated_record_from_the_keyboard(base_url, browser, desk, factory):
    page, _ = local_page(browser)
    sign_in(page, base_url, "rev-a", desk.a_key)
    assert urlsplit(page.url).path == "/review/rev-a"

    rows = page.locator("table tbody tr").all_inner_texts()
    assert len(rows) == 3 and "provider timed out" in rows[0]  # due soonest first
    assert rows[1].strip().startswith(desk.hostile_ext) and "escalation" in rows[1]
    assert "DAMAGED_PACKAGE" in rows[1] and "confidence 41%" in rows[1]
    assert "audit" in rows[2] and "a random sample of the AI's decisions" in rows[2]
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "review-queue.png"), full_page=True)

    # Keyboard only from here: open the record, choose a label, tick an action, save.
    tab_to(page, f"a[href$='/review/rev-a/{desk.hostile_id}']")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/review/rev-a/{desk.hostile_id}")
    assert page.locator("#label").input_value() == "DAMAGED_PACKAGE"  # the AI's guess first
    tab_to(page, "#label")
    page.keyboard.type("CUSTOMER_U")
    assert page.locator("#label").input_value() == "CUSTOMER_UNAVAILABLE"
    page.keyboard.press("Tab")
    with page.expect_navigation():
        page.keyboard.press("Enter")  # "Show its actions": lists them, saves nothing
    assert page.locator("#label").input_value() == "CUSTOMER_UNAVAILABLE"
    boxes = page.locator("#decision input[type=checkbox]")
    assert [boxes.nth(i).get_attribute("value") for i in range(boxes.count())] == [
        "NOTIFY_CUSTOMER",
        "RESCHEDULE_DELIVERY",
    ]
    tab_to(page, "#action-NOTIFY_CUSTOMER")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"  # a visible focus ring
    page.keyboard.press("Space")
    tab_to(page, "#note")
    page.keyboard.type("Called the customer: away until Monday.")
    tab_to(page, "#save")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/review/rev-a/{desk.timeout_id}#main")  # the next one due opens

    flash = page.get_by_role("status").inner_text()
    assert flash == (
        f"Saved: {desk.hostile_ext} is CUSTOMER_UNAVAILABLE with NOTIFY_CUSTOMER; "
        "it left the queue."
    )
    page.goto(f"{base_url}/review/rev-a")
    assert desk.hostile_ext not in page.locator("table").inner_text()
    assert page.locator("table tbody tr").count() == 2
    page.reload()
    assert page.get_by_role("status").count() == 0  # the confirmation shows once
    with factory() as s:
        review = s.scalars(select(Review)).one()
    assert (review.record_id, review.reviewer, review.label, review.actions) == (
        desk.hostile_id, "Ada Lovelace", "CUSTOMER_UNAVAILABLE", ["NOTIFY_CUSTOMER"],
    )  # fmt: skip
    assert review.note == "Called the customer: away until Monday."


def test_a_hostile_note_is_shown_as_text_on_a_locked_down_page(base_url, browser, desk):
    page, requested = local_page(browser)
    dialogs, console = [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("console", lambda m: console.append(m.text))
    sign_in(page, base_url, "rev-a", desk.a_key)

    response = page.goto(f"{base_url}/review/rev-a/{desk.hostile_id}")
    csp = response.headers["content-security-policy"]
    assert "script-src 'nonce-" in csp and "default-src 'self'" in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert page.locator("#customer-note").inner_text() == f"Customer wrote: {HOSTILE}"
    nonce = csp.split("script-src 'nonce-")[1].split("'")[0]
    scripts = page.locator("script")  # only the page's own, with this response's nonce
    assert scripts.count() == 1 and scripts.first.get_attribute("nonce") in (nonce, "")
    assert page.locator("main img").count() == 0
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert dialogs == [] and not [m for m in console if "pwned" in m]
    ai = page.locator("#ai-guess").inner_text()
    assert "DAMAGED_PACKAGE" in ai and "41%" in ai and "carrier reports a crushed box" in ai
    assert "box crushed" in page.locator("ol.timeline").inner_text()  # the order's event
    assert "low_confidence" in page.locator("section", has_text="Attempt history").inner_text()
    assert desk.a_key not in page.content()
    assert requested and all(urlsplit(u).hostname == "127.0.0.1" for u in requested)
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "review-record.png"), full_page=True)


def test_a_post_without_the_csrf_token_is_refused(base_url, browser, desk, factory):
    page, _ = local_page(browser)
    sign_in(page, base_url, "rev-a", desk.a_key)
    page.goto(f"{base_url}/review/rev-a/{desk.hostile_id}")
    token = page.locator("#decision input[name=csrf]").get_attribute("value")
    url = f"{base_url}/review/rev-a/{desk.hostile_id}"

    decision = {"label": "DAMAGED_PACKAGE", "actions": "NOTIFY_CUSTOMER"}
    for form in (decision, {**decision, "csrf": "forged"}):
        refused = page.request.post(url, form=form, max_redirects=0)
        assert refused.status == 403 and "reload it" in refused.text()
    assert page.request.post(f"{url}/requeue", form={}, max_redirects=0).status == 403
    assert page.request.post(f"{base_url}/review/rev-a/logout", max_redirects=0).status == 403

    # With the token, an action the label does not allow is refused with a clear line.
    wrong = page.request.post(
        url, form={"csrf": token, "label": "OTHER", "actions": "NOTIFY_CUSTOMER"}
    )
    assert wrong.status == 422 and "actions not allowed for OTHER: NOTIFY_CUSTOMER" in wrong.text()
    with factory() as s:
        rec = s.get(ExceptionRecord, desk.hostile_id)
        assert rec.reviewed_at is None and rec.escalated_at is not None  # still waiting


def test_a_wrong_key_gets_the_form_again_with_one_error_line(base_url, browser, desk):
    page, _ = local_page(browser)
    with structlog.testing.capture_logs() as logs:
        response = sign_in(page, base_url, "rev-a", desk.b_key)  # rev-b's key

    assert response.status == 401
    assert page.get_by_role("alert").inner_text().startswith("That key does not open")
    assert page.get_by_label("Your reviewer key").input_value() == ""
    assert desk.b_key not in page.content() and desk.b_key not in repr(logs)
    assert any(e["event"] == "review.sign_in_refused" for e in logs)
    page.goto(f"{base_url}/review/rev-a")
    assert urlsplit(page.url).path == "/review/rev-a/login"


def test_a_cookie_for_one_tenant_opens_nothing_of_another(base_url, browser, desk):
    page, _ = local_page(browser)
    sign_in(page, base_url, "rev-a", desk.a_key)
    (cookie,) = page.context.cookies()
    assert (cookie["name"], cookie["path"], cookie["httpOnly"], cookie["sameSite"]) == (
        "review_session", "/review/rev-a", True, "Strict",
    )  # fmt: skip

    for path in ("/review/rev-b", f"/review/rev-b/{desk.b_record_id}"):
        page.goto(base_url + path)
        assert urlsplit(page.url).path == "/review/rev-b/login"
        assert "private note" not in page.content()
    assert page.goto(f"{base_url}/review/rev-a/{desk.b_record_id}").status == 404
    assert "private note" not in page.content()

    # The same cookie sent on purpose to rev-b's pages (a browser would not send it).
    token = page.locator("input[name=csrf]").first.get_attribute("value")
    jar = {"review_session": cookie["value"]}
    with httpx.Client(base_url=base_url, cookies=jar, follow_redirects=False) as http:
        for path in ("/review/rev-b", f"/review/rev-b/{desk.b_record_id}"):
            answer = http.get(path)
            assert (answer.status_code, answer.headers["location"]) == (303, "/review/rev-b/login")
        post = http.post(
            f"/review/rev-b/{desk.b_record_id}", data={"csrf": token, "label": "OTHER"}
        )
        assert post.status_code == 403 and "private note" not in post.text


def test_sign_out_ends_the_session_for_a_copied_cookie_too(base_url, browser, desk):
    page, _ = local_page(browser)
    sign_in(page, base_url, "rev-a", desk.a_key)
    (cookie,) = page.context.cookies()

    def queue_from_copy(cookie_value: str) -> httpx.Response:
        with httpx.Client(base_url=base_url, cookies={"review_session": cookie_value}) as http:
            return http.get("/review/rev-a", follow_redirects=False)

    assert queue_from_copy(cookie["value"]).status_code == 200
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/review/rev-a/login")

    replayed = queue_from_copy(cookie["value"])
    assert (replayed.status_code, replayed.headers["location"]) == (303, "/review/rev-a/login")
    page.goto(f"{base_url}/review/rev-a/{desk.hostile_id}")
    assert urlsplit(page.url).path == "/review/rev-a/login"


def test_a_session_ends_when_its_cookie_expires_or_is_forged(base_url, desk, review_settings):
    """The cookie's own checks, before the server-side row (test_review_sessions.py)."""

    def cookie(**changes) -> str:
        fields = {"tenant": "rev-a", "csrf": "t", "since": time.time(), "token": "made-up"}
        made = review_session.Visit(**{**fields, **changes})
        return review_session.signer(review_settings).dumps(asdict(made))

    def queue_status(value: str) -> int:
        with httpx.Client(base_url=base_url, cookies={"review_session": value}) as http:
            return http.get("/review/rev-a", follow_redirects=False).status_code

    with httpx.Client(base_url=base_url, follow_redirects=False) as http:
        form = http.get("/review/rev-a/login").text
        csrf = form.split('name="csrf" value="')[1].split('"')[0]
        http.post("/review/rev-a/login", data={"csrf": csrf, "key": desk.a_key})
        real = http.cookies["review_session"]
    assert queue_status(real) == 200
    assert queue_status(real[:-2] + "xx") == 303  # a broken signature
    assert queue_status(cookie()) == 303  # signed, but no such session
    visit = review_session.signer(review_settings).loads(real)
    old = time.time() - review_settings.reviews.session_s - 5
    assert queue_status(cookie(token=visit["token"], since=old)) == 303


def test_requeue_for_the_ai_takes_an_escalated_record_back(base_url, browser, desk, factory):
    page, _ = local_page(browser)
    sign_in(page, base_url, "rev-a", desk.a_key)
    page.goto(f"{base_url}/review/rev-a/{desk.timeout_id}")
    page.get_by_role("button", name="Requeue for the AI").click()
    page.wait_for_url("**/review/rev-a")

    assert "went back to the AI" in page.get_by_role("status").inner_text()
    assert desk.hostile_ext in page.locator("table").inner_text()
    assert page.locator("table tbody tr").count() == 2  # the hostile record and the audit
    with factory() as s:
        rec = s.get(ExceptionRecord, desk.timeout_id)
        assert rec.escalated_at is None and rec.enrichment_retry_count == 0
