"""The review page's server-side sessions and sign-in throttling, through the real app on the
test database (the browser's side is in test_review_page.py): logout, the idle timeout, the
absolute limit and revoking the reviewer each end a session at once, even for a copied cookie;
wrong keys lock out an address and a tenant, and the right key is refused during a lockout."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import structlog
from fastapi.testclient import TestClient
from sqlalchemy import select

from enrichment.api import app, deps
from enrichment.core import review_sessions, reviewers, tenants
from enrichment.core.models import utcnow
from enrichment.core.review_sessions import ReviewSession, SigninRefusal
from enrichment.core.settings import ReviewConfig
from enrichment.metrics import prom
from tests.conftest import with_settings
from tests.factories import make_record

LIMITS = ReviewConfig(secret="test-review-secret", signin_address_max=5, signin_tenant_max=20)


@pytest.fixture
def keys(factory) -> dict[str, str]:
    with factory.begin() as s:
        a, _ = tenants.create_tenant(s, "ses-a")
        b, _ = tenants.create_tenant(s, "ses-b")
        make_record(s, a, escalated_at=utcnow())
        return {
            "ses-a": reviewers.add(s, a.id, "Ada")[1],
            "bob": reviewers.add(s, a.id, "Bob")[1],
            "ses-b": reviewers.add(s, b.id, "Cy")[1],
        }


@pytest.fixture
def browser_from(settings, factory):
    """TestClients of the real app, each from its own client address."""
    app.dependency_overrides[deps.app_settings] = lambda: with_settings(settings, reviews=LIMITS)
    made: list[TestClient] = []

    def make(address: str = "203.0.113.7") -> TestClient:
        made.append(TestClient(app, client=(address, 40000), follow_redirects=False))
        return made[-1]

    yield make
    for http in made:
        http.close()
    app.dependency_overrides.clear()


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def sign_in(http: TestClient, tenant: str, key: str, **extra: str):
    token = csrf_of(http.get(f"/review/{tenant}/login").text)
    return http.post(f"/review/{tenant}/login", data={"csrf": token, "key": key, **extra})


def queue_status(http: TestClient, tenant: str = "ses-a") -> int:
    return http.get(f"/review/{tenant}").status_code


def test_logout_ends_the_session_even_for_a_copied_cookie(browser_from, keys, factory):
    http = browser_from()
    assert sign_in(http, "ses-a", keys["ses-a"]).status_code == 303
    copied = browser_from("198.51.100.9")
    copied.cookies.update(http.cookies)
    assert queue_status(http) == queue_status(copied) == 200
    token = csrf_of(http.get("/review/ses-a").text)

    with structlog.testing.capture_logs() as logs:
        assert http.post("/review/ses-a/logout", data={"csrf": token}).status_code == 303

    answer = copied.get("/review/ses-a")
    assert (answer.status_code, answer.headers["location"]) == (303, "/review/ses-a/login")
    with factory() as s:
        (row,) = s.scalars(select(ReviewSession)).all()
    assert row.ended_at is not None and row.reviewer == "Ada"
    assert any(e["event"] == "review.signed_out" and e["reviewer"] == "Ada" for e in logs)


def test_an_idle_session_ends_and_last_seen_is_written_at_most_once_a_minute(
    browser_from, keys, factory
):
    http = browser_from()
    sign_in(http, "ses-a", keys["ses-a"])

    def last_seen():
        with factory() as s:
            return s.scalars(select(ReviewSession.last_seen_at)).one()

    def move_back(**fields_s: float) -> None:
        with factory.begin() as s:
            for row in s.scalars(select(ReviewSession)):
                for field, seconds in fields_s.items():
                    setattr(row, field, getattr(row, field) - timedelta(seconds=seconds))

    seen = last_seen()
    assert queue_status(http) == 200 and last_seen() == seen  # under a minute: no write
    move_back(last_seen_at=61)
    assert queue_status(http) == 200 and last_seen() > seen - timedelta(seconds=61)
    move_back(last_seen_at=LIMITS.idle_s - 30)
    assert queue_status(http) == 200  # used just in time: it goes on
    move_back(last_seen_at=LIMITS.idle_s + 1)
    assert queue_status(http) == 303
    assert sign_in(http, "ses-a", keys["ses-a"]).status_code == 303  # a new sign-in works
    assert queue_status(http) == 200
    move_back(created_at=LIMITS.session_s + 1)  # the absolute limit, however busy
    assert queue_status(http) == 303


def test_revoking_a_reviewer_ends_their_sessions_at_once_and_no_one_elses(
    browser_from, keys, factory
):
    ada, copy, bob = browser_from(), browser_from("198.51.100.2"), browser_from("198.51.100.3")
    other = browser_from("198.51.100.4")
    sign_in(ada, "ses-a", keys["ses-a"])
    copy.cookies.update(ada.cookies)
    sign_in(bob, "ses-a", keys["bob"])
    sign_in(other, "ses-b", keys["ses-b"])
    assert queue_status(ada) == queue_status(copy) == queue_status(bob) == 200

    with factory.begin() as s:
        reviewers.revoke(s, tenants.by_name(s, "ses-a").id, "Ada")

    assert queue_status(ada) == queue_status(copy) == 303  # at once, the copied cookie too
    assert queue_status(bob) == 200 and queue_status(other, "ses-b") == 200
    assert sign_in(ada, "ses-a", keys["ses-a"]).status_code == 401  # the key is dead too
    with factory.begin() as s:
        new_key = reviewers.add(s, tenants.by_name(s, "ses-a").id, "Ada")[1]
    assert sign_in(ada, "ses-a", new_key).status_code == 303 and queue_status(ada) == 200


def test_the_name_comes_from_the_key_never_from_the_form(browser_from, keys, factory):
    http = browser_from()
    assert sign_in(http, "ses-a", keys["bob"], reviewer="Ada").status_code == 303
    assert "Bob" in http.get("/review/ses-a").text
    with factory() as s:
        assert s.scalars(select(ReviewSession.reviewer)).all() == ["Bob"]


def test_a_post_needs_the_session_csrf_token_which_changes_at_sign_in(browser_from, keys):
    http = browser_from()
    before = csrf_of(http.get("/review/ses-a/login").text)
    sign_in(http, "ses-a", keys["ses-a"])
    after = csrf_of(http.get("/review/ses-a").text)

    assert after != before
    for form in ({}, {"csrf": before}, {"csrf": "forged"}):
        assert http.post("/review/ses-a/logout", data=form).status_code == 403
    assert queue_status(http) == 200  # none of them ended the session
    assert http.post("/review/ses-a/logout", data={"csrf": after}).status_code == 303


def test_wrong_keys_lock_out_the_address_and_the_right_key_waits_for_the_window(
    browser_from, keys, factory
):
    http = browser_from()
    with structlog.testing.capture_logs() as logs:
        refused = [sign_in(http, "ses-a", "rev_wrong").status_code for _ in range(300)]
        right = sign_in(http, "ses-a", keys["ses-a"])

    assert refused[:5] == [401] * 5 and set(refused[5:]) == {429}
    assert right.status_code == 429 and "set-cookie" not in right.headers
    assert 1 <= int(right.headers["retry-after"]) <= LIMITS.signin_window_s
    assert "Too many wrong keys from this address" in right.text and queue_status(http) == 303
    bursts = [e for e in logs if e["event"] == "review.signin_burst"]
    assert [(e["tenant"], e["by"]) for e in bursts] == [("ses-a", "address")]
    assert browser_from("198.51.100.4").get("/review/ses-a/login").status_code == 200
    assert sign_in(browser_from("198.51.100.4"), "ses-a", keys["ses-a"]).status_code == 303

    with factory.begin() as s:  # the window passes: move the refusals back past it
        for refusal in s.scalars(select(SigninRefusal)):
            refusal.refused_at -= timedelta(seconds=LIMITS.signin_window_s)
    assert sign_in(http, "ses-a", keys["ses-a"]).status_code == 303
    assert queue_status(http) == 200


def test_wrong_keys_from_many_addresses_lock_out_the_tenant_not_the_others(
    browser_from, keys, factory
):
    with structlog.testing.capture_logs() as logs:
        for i in range(LIMITS.signin_tenant_max):
            assert sign_in(browser_from(f"192.0.2.{i + 1}"), "ses-a", "rev_x").status_code == 401

    fresh = browser_from("198.51.100.20")
    locked = sign_in(fresh, "ses-a", keys["ses-a"])
    assert locked.status_code == 429 and "for this tenant" in locked.text
    assert int(locked.headers["retry-after"]) >= 1
    assert sign_in(fresh, "ses-b", keys["ses-b"]).status_code == 303  # another tenant: open
    assert [e["by"] for e in logs if e["event"] == "review.signin_burst"] == ["tenant"]
    scraped = prom.exposition(factory).decode()
    assert 'enrichment_review_signin_refusals{tenant="ses-a"} 20.0' in scraped
    assert 'enrichment_review_signin_refusals{tenant="ses-b"} 0.0' in scraped


def test_the_lockout_lasts_until_the_nth_newest_refusal_leaves_the_window(factory, keys):
    limits = ReviewConfig(signin_window_s=300.0, signin_address_max=3, signin_tenant_max=100)
    start = utcnow()
    with factory.begin() as s:
        tenant_id = tenants.by_name(s, "ses-a").id
        for minute in (0, 1, 2, 3):  # four refusals a minute apart
            at = start + timedelta(minutes=minute)
            review_sessions.refuse(s, tenant_id, "a", now=at, limits=limits)

        def locked(after_s: float):
            at = start + timedelta(seconds=after_s)
            return review_sessions.lockout(s, tenant_id, "a", now=at, limits=limits)

        # The 3rd newest is at 60 s: the address stays locked until it is 300 s old.
        assert locked(200) == review_sessions.Lockout("address", 160)
        assert locked(359).by == "address" and locked(361) is None
        assert review_sessions.lockout(s, tenant_id, "b", now=start, limits=limits) is None
        # A refusal 10 min later forgets the ones older than the window (and the metric's).
        review_sessions.refuse(s, tenant_id, "a", now=start + timedelta(minutes=10), limits=limits)
        assert len(s.scalars(select(SigninRefusal)).all()) == 1
