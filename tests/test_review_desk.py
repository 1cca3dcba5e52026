"""The operator's day on the review page (issue 23): the label saved is the one chosen, with
script and without; the queue sorts by deadline and shows it; a reviewer claims what they
open and a second reviewer sees it taken; bulk accept of the AI's answer with a reason;
keyboard shortcuts; the next record opens after a decision; the report behind the sign-in.

Debian's Chromium through Playwright against the real API under uvicorn on the test database
(tests/browser.py); fixtures and sign-in: tests/test_review_page.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select, update

from enrichment.core import audit, review_claims, reviewers, tenants
from enrichment.core.audit import AuditEntry
from enrichment.core.models import ExceptionRecord, Review, utcnow
from enrichment.core.settings import ReviewConfig
from enrichment.reviews import queue
from tests.browser import chromium, local_page, served
from tests.conftest import with_settings
from tests.factories import make_record
from tests.test_review_page import sign_in

SCREENSHOTS = Path("var")  # ignored by git, as test_review_page.py
REASON = "Spot-checked with the carrier feed: the AI is right on these."


@pytest.fixture
def base_url(settings, factory) -> Iterator[str]:
    """The real app under uvicorn on a free 127.0.0.1 port, on the test database."""
    reviews = ReviewConfig(secret="test-review-secret")
    with served(with_settings(settings, reviews=reviews)) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@dataclass
class Day:
    """Tenant "desk": Ada and Bo review it. `critical`: escalated 10 min ago (the AI said
    DAMAGED_PACKAGE at 55%); `high`: escalated 1 h ago, no AI label; `medium`: an audit sample
    resolved 2 h ago (PICK_DELAY with PRIORITIZE_PICK); `low`: an audit sample 30 min ago."""

    ada: str
    bo: str
    critical: int
    high: int
    medium: int
    low: int


@pytest.fixture
def day(factory) -> Day:
    now = utcnow()
    with factory.begin() as s:
        t, _ = tenants.create_tenant(s, "desk")
        ada, bo = reviewers.add(s, t.id, "Ada Lovelace")[1], reviewers.add(s, t.id, "Bo")[1]
        critical = make_record(
            s, t, severity="critical", escalated_at=now - timedelta(minutes=10),
            ai_label="DAMAGED_PACKAGE", ai_confidence=0.55,
            escalation_reason="confidence stayed below 0.7 after all retries",
        )  # fmt: skip
        high = make_record(
            s, t, severity="high", escalated_at=now - timedelta(hours=1),
            escalation_reason="TransientError: provider timed out",
        )  # fmt: skip
        medium = make_record(
            s, t, severity="medium", audit_sample=True, ai_label="PICK_DELAY",
            ai_confidence=0.93, ai_resolution={"actions": ["PRIORITIZE_PICK"]},
            enriched_at=now - timedelta(hours=2), reason_code="PICK",
        )  # fmt: skip
        low = make_record(
            s, t, severity="low", audit_sample=True, ai_label="OTHER", ai_confidence=0.9,
            ai_resolution={"actions": []}, enriched_at=now - timedelta(minutes=30),
        )  # fmt: skip
    return Day(ada, bo, critical.id, high.id, medium.id, low.id)


def reviews_of(factory, record_id: int) -> list[Review]:
    with factory() as s:
        return list(s.scalars(select(Review).where(Review.record_id == record_id)))


def open_record(page, url: str, record_id: int) -> None:
    page.goto(f"{url}/review/desk/{record_id}")


def test_the_queue_sorts_by_deadline_and_shows_each_one(base_url, browser, day, factory):
    page, _ = local_page(browser)
    sign_in(page, base_url, "desk", day.ada)

    rows = [r.strip() for r in page.locator("#queue tbody tr").all_inner_texts()]
    # Critical due in 50 min, high in 3 h, medium (the oldest) in 22 h, low in 3 days.
    order = [page.locator("#queue tbody tr a").nth(i).get_attribute("href") for i in range(4)]
    assert [h.rsplit("/", 1)[1] for h in order] == [
        str(i) for i in (day.critical, day.high, day.medium, day.low)
    ]
    assert "due in 50 min" in rows[0] and "severity critical" in rows[0]
    assert "due in 3 h" in rows[1] and "due in 22 h" in rows[2]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "review-queue-deadlines.png"), full_page=True)

    # The tenant gives medium records 1 h: the audit item is overdue and goes first.
    with factory.begin() as s:
        t = tenants.by_name(s, "desk")
        t.settings = {**(t.settings or {}), "review_deadline_s": {"medium": 3600}}
    page.reload()
    first = page.locator("#queue tbody tr").first
    assert first.locator("a").get_attribute("href").endswith(f"/{day.medium}")
    assert "overdue by 60 min" in first.inner_text()


def test_the_deadline_is_computed_in_sql_on_both_engines(factory, day):
    """The order the database sorts by is the deadline the page shows (PostgreSQL here;
    SQLite through the embedded default in test_demo)."""
    with factory() as s:
        t = tenants.by_name(s, "desk")
        got = queue.queue(s, t.id, now=utcnow(), reviews=ReviewConfig(deadline_s_low=60.0))
    deadlines = [i.deadline for i in got.items]
    assert deadlines == sorted(deadlines) and got.items[0].record_id == day.low


@pytest.mark.parametrize("script", [False, True], ids=["script-off", "script-on"])
def test_the_label_saved_is_the_one_chosen(base_url, browser, day, factory, script):
    """The bug: DAMAGED_PACKAGE (the AI's) was saved after PICK_DELAY was picked."""
    page, _ = local_page(browser, script=script)
    sign_in(page, base_url, "desk", day.ada)
    open_record(page, base_url, day.critical)
    assert page.locator("#label").input_value() == "DAMAGED_PACKAGE"

    page.locator("#label").select_option("PICK_DELAY")
    if script:  # the actions follow the label at once
        assert page.locator("#save").inner_text() == "Save decision: PICK_DELAY"
        page.get_by_label("PRIORITIZE_PICK").check()
        page.locator("#save").click()
    else:  # Save before "Show its actions": refused with one line, never saved as the AI's
        page.locator("#save").click()
        alert = page.get_by_role("alert")
        assert alert.inner_text() == (
            "Not saved: you chose PICK_DELAY, but the actions listed were DAMAGED_PACKAGE's. "
            "Here are PICK_DELAY's: tick the ones to send, then save."
        )
        assert reviews_of(factory, day.critical) == []
        assert page.locator("#label").input_value() == "PICK_DELAY"
        assert page.locator("#save").inner_text() == "Save decision: PICK_DELAY"
        page.get_by_label("PRIORITIZE_PICK").check()
        page.locator("#save").click()
    page.wait_for_url("**/review/desk/*#main")
    assert page.get_by_role("status").inner_text().startswith("Saved: exc-")
    (review,) = reviews_of(factory, day.critical)
    assert (review.label, review.actions) == ("PICK_DELAY", ["PRIORITIZE_PICK"])


def test_show_its_actions_then_save_without_script(base_url, browser, day, factory):
    page, _ = local_page(browser, script=False)
    sign_in(page, base_url, "desk", day.ada)
    open_record(page, base_url, day.high)  # no AI label: nothing chosen yet
    assert page.locator("#label").input_value() == ""
    page.locator("#label").select_option("CUSTOMER_UNAVAILABLE")
    page.locator("#note").fill("Called: away until Monday.")
    page.get_by_role("button", name="Show its actions").click()
    assert reviews_of(factory, day.high) == []  # showing saves nothing
    assert page.locator("#note").input_value() == "Called: away until Monday."
    page.get_by_label("RESCHEDULE_DELIVERY").check()
    page.locator("#save").click()
    page.wait_for_url("**#main")
    (review,) = reviews_of(factory, day.high)
    assert (review.label, review.actions) == ("CUSTOMER_UNAVAILABLE", ["RESCHEDULE_DELIVERY"])
    assert review.note == "Called: away until Monday."


def test_a_second_reviewer_sees_the_claim_and_cannot_decide(base_url, browser, day, factory):
    ada, _ = local_page(browser)
    bo, _ = local_page(browser)
    sign_in(ada, base_url, "desk", day.ada)
    sign_in(bo, base_url, "desk", day.bo)
    open_record(ada, base_url, day.critical)  # opening claims it
    assert "You hold this record until" in ada.locator("#claim").inner_text()

    bo.goto(f"{base_url}/review/desk")
    row = bo.locator("#queue tbody tr").first
    assert "taken by Ada Lovelace until" in row.inner_text()
    open_record(bo, base_url, day.critical)
    assert bo.locator("#claim").inner_text().startswith("Taken by Ada Lovelace until")
    bo.locator("#save").click()  # the AI's label is chosen: Bo tries to save it
    assert "Not saved: Ada Lovelace holds record exc-" in bo.locator("main").inner_text()
    assert reviews_of(factory, day.critical) == []
    with factory() as s:
        held = review_claims.holder(s, s.get(ExceptionRecord, day.critical).tenant_id,
                                    day.critical, now=utcnow())  # fmt: skip
    assert held is not None and held.reviewer == "Ada Lovelace"

    ada.get_by_role("button", name="Release it").click()
    assert ada.get_by_role("status").inner_text() == "Released: others can open it now."
    open_record(bo, base_url, day.critical)
    assert "You hold this record until" in bo.locator("#claim").inner_text()
    bo.locator("#save").click()
    bo.wait_for_url("**#main")
    (review,) = reviews_of(factory, day.critical)
    assert (review.reviewer, review.label) == ("Bo", "DAMAGED_PACKAGE")
    with factory() as s:  # the decision freed it
        assert s.get(review_claims.ReviewClaim, day.critical) is None


def test_an_expired_claim_no_longer_holds(base_url, browser, day, factory):
    ada, _ = local_page(browser)
    bo, _ = local_page(browser)
    sign_in(ada, base_url, "desk", day.ada)
    sign_in(bo, base_url, "desk", day.bo)
    open_record(ada, base_url, day.medium)
    with factory.begin() as s:
        s.execute(
            update(review_claims.ReviewClaim).values(claimed_until=utcnow() - timedelta(seconds=1))
        )
    open_record(bo, base_url, day.medium)
    assert "You hold this record until" in bo.locator("#claim").inner_text()


def test_bulk_accept_of_the_ai_answer_with_a_reason(base_url, browser, day, factory):
    ada, _ = local_page(browser)
    bo, _ = local_page(browser)
    sign_in(bo, base_url, "desk", day.bo)
    open_record(bo, base_url, day.low)  # Bo holds the low audit item
    sign_in(ada, base_url, "desk", day.ada)

    # Without a reason nothing is accepted (the browser asks for one; the server too).
    token = ada.locator("#bulk input[name=csrf]").get_attribute("value")
    answer = ada.request.post(
        f"{base_url}/review/desk/accept", form={"csrf": token, "scope": "filtered", "note": " "}
    )
    assert "Not accepted: give the reason" in answer.text()

    ada.goto(f"{base_url}/review/desk?kind=audit")
    assert ada.locator("#queue tbody tr").count() == 2
    ada.locator("#bulk-note").fill(REASON)
    ada.get_by_role("button", name="Accept all 2 shown").click()
    flash = ada.get_by_role("status").inner_text()
    assert flash.startswith("Accepted the AI's answer for 1 (exc-")
    assert "Skipped 1: exc-" in flash and "(taken by Bo until" in flash
    assert urlsplit(ada.url).query == "kind=audit"  # the same filter
    (review,) = reviews_of(factory, day.medium)
    assert (review.reviewer, review.label, review.actions, review.note) == (
        "Ada Lovelace", "PICK_DELAY", ["PRIORITIZE_PICK"], REASON,
    )  # fmt: skip
    assert reviews_of(factory, day.low) == []
    with factory() as s:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.action == audit.REVIEWED)).all()
    assert [(r.actor, r.subject) for r in rows] == [
        ("reviewer:Ada Lovelace", external_id(factory, day.medium))
    ]

    # Ticked records: one with no AI label is skipped with why.
    ada.goto(f"{base_url}/review/desk")
    ada.locator(f"#pick-{day.high}").check()
    ada.locator(f"#pick-{day.critical}").check()
    ada.locator("#bulk-note").fill(REASON)
    ada.get_by_role("button", name="Accept the ticked records").click()
    flash = ada.get_by_role("status").inner_text()
    assert flash.startswith("Accepted the AI's answer for 1 (")
    assert "(the AI gave no label)" in flash
    assert [r.label for r in reviews_of(factory, day.critical)] == ["DAMAGED_PACKAGE"]
    assert reviews_of(factory, day.high) == []


def external_id(factory, record_id: int) -> str:
    with factory() as s:
        return s.get(ExceptionRecord, record_id).external_id


def test_the_keyboard_path_and_the_next_record(base_url, browser, day, factory):
    page, _ = local_page(browser)
    sign_in(page, base_url, "desk", day.ada)
    assert page.locator("#keys").is_visible()  # the help line, shown by the script
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")
    page.keyboard.press("j")  # the second row: the high escalation
    current = page.locator("#queue tbody tr.current")
    assert current.locator("a").get_attribute("href").endswith(f"/{day.high}")
    page.keyboard.press("j")  # the medium audit item
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/review/desk/{day.medium}")
    page.locator("#label").select_option("OTHER")  # then "a" puts the AI's answer back
    page.locator("main").focus()
    page.keyboard.press("a")
    assert page.locator("#label").input_value() == "PICK_DELAY"
    assert page.get_by_label("PRIORITIZE_PICK").is_checked()
    assert page.evaluate("document.activeElement.id") == "save"
    page.keyboard.press("Enter")
    # The next due that no one else holds: the critical one.
    page.wait_for_url(f"**/review/desk/{day.critical}#main")
    assert "exc-" in page.get_by_role("status").inner_text()
    (review,) = reviews_of(factory, day.medium)
    assert (review.label, review.actions) == ("PICK_DELAY", ["PRIORITIZE_PICK"])
    page.keyboard.press("q")
    page.wait_for_url("**/review/desk")


def test_the_report_opens_in_a_browser_behind_the_sign_in(base_url, browser, day):
    page, _ = local_page(browser)
    page.goto(f"{base_url}/review/desk/report")
    assert urlsplit(page.url).path == "/review/desk/login"
    sign_in(page, base_url, "desk", day.ada)
    page.get_by_role("link", name="The tenant's report").click()
    page.wait_for_url("**/review/desk/report")
    assert "desk" in page.title() or "desk" in page.locator("body").inner_text()
    assert page.locator("svg").count() > 0
