"""A record's story over the API and in the terminal, on real PostgreSQL.

Given a record whose analysis failed twice and then completed through the real pipeline,
when its story is asked for, then every attempt, stage, action and event is there in order,
nothing of another tenant opens it, and the terminal prints customer text harmlessly.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from enrichment.cli.story import attempt_line, safe, timeline, when
from enrichment.core import reviewers, tenants
from enrichment.core.errors import PermanentError
from enrichment.core.models import ExceptionRecord, utcnow
from enrichment.core.selection import claim_due
from enrichment.core.story import AttemptView, Story, state_of
from tests.factories import make_record
from tests.scripted import ScriptedProvider, fail
from tests.test_pipeline import run_chain

HOSTILE_NOTE = "Box \x1b[31mcrushed\x1b[0m\x1b]0;pwned\x07 on\narrival\u202e"
FAILED_THEN_DONE = [
    ("order_analysis", "failed"),
    ("order_analysis", "failed"),
    ("order_analysis", "completed"),
    ("classification", "completed"),
    ("automation", "completed"),
]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def drive(factory, settings, record_id: int, provider, *, runs: int) -> list[str]:
    """Claim and run the chain `runs` times, making the record due before each claim as the
    sweep would once its backoff has passed; the last token of each run."""
    tokens = []
    for _ in range(runs):
        with factory.begin() as s:
            rec = s.get(ExceptionRecord, record_id)
            rec.next_attempt_at = utcnow() - timedelta(seconds=1)
            rec.lease_expires_at = None
            [claim] = claim_due(s, settings, tenant_id=rec.tenant_id)
        run_chain(factory, provider, settings, record_id, claim.lease_token)
        tokens.append(claim.lease_token)
    return tokens


@pytest.fixture
def world(factory, settings):
    """a-3pl's record failed analysis twice and then completed; b-3pl has a key of its own."""
    with factory.begin() as s:
        a, key_a = tenants.create_tenant(s, "a-3pl")
        a.settings = {"audit_rate": 0.0}  # never sampled for audit: the story stays the same
        _, key_b = tenants.create_tenant(s, "b-3pl")
        for name in ("ana", "bob"):  # the reviewers the reviews name
            reviewers.add(s, a.id, name)
        rec = make_record(s, a, notes=HOSTILE_NOTE, reference_label="WRONG_ADDRESS")
        record_id, external_id, order_id = rec.id, rec.external_id, rec.order_id
    provider = ScriptedProvider(analyze=[fail("AI timed out 1"), fail("AI timed out 2")])
    tokens = drive(factory, settings, record_id, provider, runs=3)
    return {
        "keys": {"a": key_a, "b": key_b},
        "external_id": external_id,
        "order_id": order_id,
        "tokens": tokens,
    }


def get_story(client, world, key="a", external_id=None):
    path = f"/api/enrichment/records/a-3pl/{external_id or world['external_id']}"
    return client.get(path, headers=auth(world["keys"][key]))


def test_the_story_has_every_attempt_in_order_with_errors_and_tokens(client, world):
    r = get_story(client, world)
    assert r.status_code == 200
    attempts = r.json()["attempts"]
    assert [(a["stage"], a["outcome"]) for a in attempts] == FAILED_THEN_DONE
    assert [a["error"] for a in attempts[:2]] == ["AI timed out 1", "AI timed out 2"]
    assert all(a["error"] is None for a in attempts[2:])
    assert [a["input_tokens"] for a in attempts] == [0, 0, 10, 10, 10]
    assert [a["output_tokens"] for a in attempts] == [0, 0, 5, 5, 5]
    assert all(a["model"] == "script-1" and a["prompt_version"] == "v-test" for a in attempts[2:])
    times = [a["created_at"] for a in attempts]
    assert times == sorted(times)


def test_the_story_has_stages_actions_events_and_a_summary(client, world):
    body = get_story(client, world).json()
    assert [(v["stage"], v["status"]) for v in body["stages"]] == [
        ("order_analysis", "COMPLETED"),
        ("classification", "COMPLETED"),
        ("automation", "COMPLETED"),
    ]
    errors = [e["error"] for e in body["stages"][0]["errors"]]
    assert errors == ["TransientError: AI timed out 1", "TransientError: AI timed out 2"]
    assert body["stages"][1]["errors"] == [] and body["stages"][0]["error"] is None
    actions = {a["action"]: a for a in body["actions"]}
    assert set(actions) == {"OPEN_CARRIER_CLAIM", "RESHIP_ORDER"}
    assert all(a["status"] == "RECORDED" and a["delivered_at"] is None for a in actions.values())
    events = body["events"]
    assert sorted(e["type"] for e in events) == [
        "action.requested",
        "action.requested",
        "record.enriched",
    ]
    assert all(e["webhook_id"] == f"evt_{e['id']}" and e["status"] == "pending" for e in events)
    requested = {e["action_id"] for e in events if e["type"] == "action.requested"}
    assert requested == {a["id"] for a in actions.values()}
    assert body["escalation"] is None
    assert body["summary"] == {
        "state": "enriched",
        "in_review": False,
        "total_cost_usd": pytest.approx(0.0003),
        "attempts": 5,
        "failed_attempts": 2,
    }


def test_the_story_has_the_current_fields_but_no_ground_truth_or_lease(client, world):
    r = get_story(client, world)
    record = r.json()["record"]
    assert record["external_id"] == world["external_id"]
    assert record["order_external_id"].startswith("order-")
    assert record["order_events"][0]["type"] == "package_damaged"
    assert (record["ai_label"], record["ai_confidence"]) == ("DAMAGED_PACKAGE", 0.92)
    assert record["retry_count"] == 2 and record["enriched_at"] is not None
    assert record["ai_source"]["automation"]["model"] == "script-1"
    assert record["notes"] == HOSTILE_NOTE  # JSON escapes it; the terminal strips it
    assert "reference_label" not in r.text and "WRONG_ADDRESS" not in r.text
    assert "lease" not in r.text
    assert not any(token in r.text for token in world["tokens"])


def test_an_escalated_record_tells_why(client, factory, settings, world):
    with factory.begin() as s:
        rec = make_record(s, tenants.require(s, "a-3pl"))
        record_id, external_id = rec.id, rec.external_id
    provider = ScriptedProvider(analyze=[PermanentError("401 invalid x-api-key")])
    drive(factory, settings, record_id, provider, runs=1)
    body = get_story(client, world, external_id=external_id).json()
    assert body["summary"]["state"] == "escalated"
    assert "401 invalid x-api-key" in body["escalation"]["reason"]
    assert [e["type"] for e in body["events"]] == ["record.escalated"]
    assert body["actions"] == [] and body["record"]["ai_label"] is None


def test_another_tenants_key_an_unknown_record_and_no_key_open_nothing(client, world):
    other = get_story(client, world, key="b")
    assert other.status_code == 404 and world["external_id"] not in other.text
    unknown = get_story(client, world, external_id="exc-none")
    assert unknown.status_code == 404
    assert unknown.json() == {"detail": "record 'exc-none' not found"}
    missing = client.get(f"/api/enrichment/records/a-3pl/{world['external_id']}")
    assert missing.status_code == 401


def test_the_route_declares_its_404_problem(client):
    operation = client.get("/openapi.json").json()["paths"][
        "/api/enrichment/records/{tenant}/{external_id}"
    ]["get"]
    assert operation["responses"]["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Problem"
    }
    assert "Story" in operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]


@pytest.fixture
def reviewed(client, factory, settings, world):
    """a-3pl's second record: escalated (the key was refused), then decided by ana and
    overridden by bob; both notes carry terminal escapes."""
    with factory.begin() as s:
        rec = make_record(s, tenants.require(s, "a-3pl"))
        record_id, external_id = rec.id, rec.external_id
    provider = ScriptedProvider(analyze=[PermanentError("401 invalid x-api-key")])
    drive(factory, settings, record_id, provider, runs=1)
    path, key = f"/api/enrichment/reviews/a-3pl/{record_id}", auth(world["keys"]["a"])
    first = {"label": "DAMAGED_PACKAGE", "actions": ["RESHIP_ORDER"], "reviewer": "ana"}
    client.post(path, json={**first, "note": HOSTILE_NOTE}, headers=key).raise_for_status()
    second = {"label": "OTHER", "reviewer": "bob", "note": "not \x1b[2Jdamage", "override": True}
    client.post(path, json=second, headers=key).raise_for_status()
    return external_id


def test_the_story_has_the_reviews_and_the_final_decision(client, world, reviewed):
    body = get_story(client, world, external_id=reviewed).json()
    one, two = body["reviews"]
    assert (one["reviewer"], one["kind"], one["label"], one["actions"]) == (
        "ana", "escalation", "DAMAGED_PACKAGE", ["RESHIP_ORDER"],
    )  # fmt: skip
    assert one["note"] == HOSTILE_NOTE and one["overrides"] is None
    assert (one["ai_label"], one["ai_confidence"]) == (None, None)  # the AI never answered
    assert (two["reviewer"], two["label"], two["overrides"]) == ("bob", "OTHER", one["id"])
    decision = body["decision"]
    assert (decision["final_label"], decision["final_actions"]) == ("OTHER", [])
    assert decision["decided_by"] == "human" and decision["reviewed_at"] == two["created_at"]
    assert body["record"]["ai_label"] is None and body["record"]["audit_sample"] is False
    assert body["summary"]["state"] == "reviewed" and body["summary"]["in_review"] is False
    assert body["escalation"]["closed_at"] == two["created_at"]
    assert [e["type"] for e in body["events"]] == [
        "record.escalated", "record.reviewed", "action.requested", "record.reviewed",
    ]  # fmt: skip


def test_an_unreviewed_story_has_no_reviews_and_no_decision(client, world):
    body = get_story(client, world).json()
    assert body["reviews"] == [] and body["decision"] is None
    assert body["summary"]["in_review"] is False and body["escalation"] is None


def positions(out: str, needles: list[str]) -> list[int]:
    """The line number of each needle's first line at or after the previous needle's."""
    lines, found, start = out.splitlines(), [], 0
    for needle in needles:
        start = next(i for i in range(start, len(lines)) if needle in lines[i])
        found.append(start)
    return found


def test_show_prints_the_timeline_in_order(cli, world):
    code, out, err = cli("show", "a-3pl", world["external_id"])
    assert code == 0 and err == ""
    assert out.startswith(f"record {world['external_id']}  order order-")
    assert "tenant a-3pl" in out.splitlines()[0]
    assert re.search(r"^  state +enriched$", out, re.M)
    assert re.search(r"^  label +DAMAGED_PACKAGE \(confidence 0.92, uncalibrated\)$", out, re.M)
    # Each needle must be found after the previous one: the order is the story's.
    positions(
        out,
        [
            "timeline (UTC):",
            "created (DAMAGE, high)",
            "order_analysis failed",
            "order_analysis failed",
            "order_analysis completed",
            "classification completed",
            "automation completed",
            "enriched: DAMAGED_PACKAGE",
            "action OPEN_CARRIER_CLAIM recorded",
            "stages:",
            "actions:",
            "events:",
        ],
    )
    failed = [line for line in out.splitlines() if "order_analysis failed" in line]
    assert "error: AI timed out 1" in failed[0] and "error: AI timed out 2" in failed[1]
    done = next(line for line in out.splitlines() if "automation completed" in line)
    assert "scripted/script-1/v-test" in done and "tokens 10 in / 5 out" in done
    assert "0.000100 USD" in done
    assert "2 errors, latest: TransientError: AI timed out 2" in out
    assert out.count("action.requested") == 2 and "record.enriched  pending" in out


def test_show_prints_the_reviews_after_the_escalation_and_the_decision(cli, reviewed):
    code, out, err = cli("show", "a-3pl", reviewed)
    assert code == 0 and err == ""
    assert re.search(r"^  state +reviewed$", out, re.M)
    assert re.search(r"^  decision +OTHER, actions none \(by human, \d{4}-\d\d-\d\d ", out, re.M)
    positions(
        out,
        [
            "timeline (UTC):",
            "escalated to a person: ",
            "reviewed by ana (escalation): DAMAGED_PACKAGE, actions RESHIP_ORDER; no AI label",
            "action RESHIP_ORDER recorded",
            "reviewed by bob (escalation): OTHER, actions none; no AI label; overrides review",
            "reviews:",
            "actions:",
        ],
    )
    assert "note: Box crushed on arrival" in out and "note: not damage" in out
    assert "\x1b" not in out and "pwned" not in out and "\u202e" not in out


def test_show_strips_escapes_and_controls_from_customer_text(cli, world):
    _, out, _ = cli("show", "a-3pl", world["external_id"])
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "pwned" not in out
    assert re.search(r"^  notes +Box crushed on arrival$", out, re.M)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("show", "a-3pl", "exc-none"), "enrichment: tenant 'a-3pl' has no record 'exc-none'\n"),
        (("show", "zz-none", "exc-1"), "enrichment: unknown tenant 'zz-none'\n"),
    ],
)
def test_show_answers_an_unknown_record_or_tenant_in_one_line(cli, world, argv, message):
    code, out, err = cli(*argv)
    assert (code, out, err) == (64, "", message)  # a user's mistake: EX_USAGE


def test_the_enrichment_follows_the_attempt_that_wrote_it_across_a_millisecond(client, world):
    s = Story.model_validate(get_story(client, world).json())
    last = s.attempts[-1].created_at.replace(microsecond=0)  # .000: a millisecond boundary
    s.attempts[-1].created_at = last
    s.record.enriched_at = last - timedelta(microseconds=1)  # computed just before its row
    lines = timeline(s)
    automation = next(i for i, line in enumerate(lines) if "automation completed" in line)
    assert "enriched: DAMAGED_PACKAGE" in lines[automation + 1]
    assert lines[automation + 1].startswith(when(s.record.enriched_at))


def test_a_reopen_audit_is_one_safe_line_with_what_it_replaced():
    audit = AttemptView(
        id=9,
        stage="reopen",
        outcome="reopened",
        error=None,
        latency_s=0.0,
        provider="none",
        model=None,
        prompt_version=None,
        input_tokens=0,
        output_tokens=0,
        cache_write_tokens=0,
        cache_read_tokens=0,
        cost_usd=0.0,
        created_at=utcnow(),
        detail={"ai_label": "DAMAGED_PACKAGE", "ai_notes": "was \x1b[2Jwrong\nlabel"},
    )
    line = attempt_line(audit)
    assert line.startswith("reopened (audit, reopen): ")
    assert '"ai_label": "DAMAGED_PACKAGE"' in line and "\x1b" not in line and "\n" not in line


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text", "plain text"),
        ("\x1b[2J\x1b[Hcleared", "cleared"),
        ("\x1b]8;;https://evil\x1b\\link\x1b]8;;\x1b\\", "link"),
        ("two\nlines\r\tand\u2028more", "two lines and more"),
        ("a\x00b\x7fc\x9bd\u200fe", "abcde"),
        (None, "-"),
    ],
)
def test_safe_leaves_one_printable_line(raw, shown):
    assert safe(raw) == shown


def test_safe_truncates_long_text():
    assert safe("x" * 500, limit=20) == "x" * 17 + "..."


def test_state_of_tells_claimed_and_due_from_waiting():
    now = utcnow()
    later, earlier = now + timedelta(minutes=5), now - timedelta(minutes=1)

    def rec(**kw) -> ExceptionRecord:
        base = {
            "enriched_at": None,
            "escalated_at": None,
            "reviewed_at": None,
            "lease_expires_at": None,
        }
        return ExceptionRecord(**{**base, "next_attempt_at": earlier, **kw})

    assert state_of(rec(), now) == "waiting"
    assert state_of(rec(lease_expires_at=later), now) == "in progress"
    assert state_of(rec(lease_expires_at=later, next_attempt_at=later), now) == "waiting"
    assert state_of(rec(escalated_at=earlier), now) == "escalated"
    assert state_of(rec(enriched_at=earlier), now) == "enriched"
    assert state_of(rec(escalated_at=earlier, reviewed_at=now), now) == "reviewed"
    assert state_of(rec(enriched_at=earlier, reviewed_at=now), now) == "reviewed"
