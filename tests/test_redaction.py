"""What the prompt builder lets out of a record (issue 22, findings 1 and 12). Pure.

Redaction finds e-mails, IBANs (mod-97), card numbers (Luhn) and phones, leaves look-alikes
that fail their check, does linear work on any input, and is applied before a value is cut,
so a cut never leaves half of something unredacted. Every part of a rendered prompt is
bounded, keys included.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from enrichment.core.provider import RecordContext
from enrichment.providers.prompts import (
    MAX_KEY_CHARS,
    MAX_STRING_CHARS,
    MAX_TAG_CHARS,
    load,
    redact,
    render_user,
)
from enrichment.providers.prompts.redaction import iban_ok, luhn_ok, redact_prefix


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to jane.doe+orders@mail.example.co.uk today", "write to [EMAIL] today"),
        ("card 4111 1111 1111 1111 exp 12/27", "card [CARD] exp 12/27"),
        ("card 4111-1111-1111-1111.", "card [CARD]."),
        ("amex 378282246310005", "amex [CARD]"),
        ("pay to DE89 3704 0044 0532 0130 00 THANKS", "pay to [IBAN] THANKS"),
        ("iban GB82WEST12345698765432", "iban [IBAN]"),
        ("iban: fr1420041010050500013m02606", "iban: [IBAN]"),
        ("call +1 (415) 555-0100 after 5", "call [PHONE] after 5"),
        ("tel 030 1234 5678", "tel [PHONE]"),
    ],
)
def test_personal_data_is_redacted(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112 fails Luhn",
        "tracking 12345678901234567890 is 20 digits, not a card",
        "order 4111111111111111x is glued to a word",
        "iban GB82WEST12345698765433 fails mod-97",
        "DE89 3704 0044 0532 0130 0 is one character short",
        "order 123456789 and amount 1234.50 and 2026-11-02 10:00:00",
        "user@localhost has no dot in its domain",
    ],
)
def test_look_alikes_that_fail_their_check_are_kept(text):
    assert redact(text) == text


def test_the_checks_themselves():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("DE89370400440532013000") and not iban_ok("DE89370400440532013001")


def test_a_cut_never_leaves_half_an_email_or_card():
    # Given PII straddling every cut position a long value can have
    for offset in range(0, 60, 3):
        text = "x" * (MAX_STRING_CHARS - offset) + " jane.doe@example.com 4111 1111 1111 1111 "
        text += "y " * 5000

        out = redact_prefix(text, MAX_STRING_CHARS)

        assert len(out) <= MAX_STRING_CHARS
        assert "@" not in out and "4111" not in out and "jane" not in out


def test_a_long_value_is_read_only_in_part():
    text = "note " * 100_000 + "jane@example.com"
    assert redact_prefix(text, 10) == "note note "


def _context(**changes) -> RecordContext:
    values = dict(
        tenant="t", record_id=1, attempt=0, reason_code="DAMAGED", severity="high",
        notes="ok", order={"name": "#1"}, events=[],
    )  # fmt: skip
    return RecordContext(**{**values, **changes})


def _customer_data(ctx: RecordContext) -> dict:
    user = render_user(load("v2"), "analyze", ctx)
    start, end = user.index("<customer_data>"), user.index("</customer_data>")
    return json.loads(user[start + len("<customer_data>") : end])


def test_keys_are_cut_and_redacted_and_every_part_is_bounded():
    order = {
        "k" * 5000: "v",
        "jane@example.com": "key with an e-mail",
        "deep": json.loads('{"d": ' * 40 + "1" + "}" * 40),
        "list": list(range(10_000)),
        "many": {f"x{i}": "t" * 3000 for i in range(2000)},
    }

    data = _customer_data(_context(order=order))

    rendered = data["order"]
    assert "k" * MAX_KEY_CHARS in rendered and not any(len(k) > MAX_KEY_CHARS for k in rendered)
    assert "[EMAIL]" in rendered and "jane@example.com" not in json.dumps(data)
    assert len(rendered["list"]) == 50 and rendered["list"][-1] == 9999
    assert "[cut]" in json.dumps(rendered["deep"])
    assert len(json.dumps(data)) < 2 * MAX_TAG_CHARS


def test_object_details_are_bounded_and_redacted_like_any_value():
    # Worse than ingestion lets in: 500 events, each detail at every limit at once.
    detail = {
        "k" * 5000: "v",
        "customer_email": "jane@example.com",
        "refund": "to card 4111 1111 1111 1111 or DE89370400440532013000",
        "deep": json.loads('{"d": ' * 40 + "1" + "}" * 40),
        "scans": list(range(10_000)),
        "many": {f"x{i}": "t" * 3000 for i in range(300)},
    }
    events = [{"source": "helpdesk", "type": "message", "detail": detail} for _ in range(500)]

    data = _customer_data(_context(events=events))

    text = json.dumps(data)
    assert len(text) < 2 * MAX_TAG_CHARS and len(data["events"]) == 50
    first = data["events"][0]["detail"]
    assert first["customer_email"] == "[EMAIL]" and "jane@" not in text
    assert "4111" not in text and "DE89" not in text and "[CARD]" in first["refund"]
    assert not any(len(k) > MAX_KEY_CHARS for k in first) and "[cut]" in json.dumps(first["deep"])


def test_a_card_in_the_notes_or_payload_never_reaches_the_prompt():
    ctx = _context(
        notes="refund to card 5555 5555 5555 4444 please",
        order={"payment": {"details": "IBAN DE89370400440532013000", "card": "4012888888881881"}},
    )
    user = render_user(load("v2"), "analyze", ctx)

    assert "5555" not in user and "4012888888881881" not in user and "DE89" not in user
    assert user.count("[CARD]") == 2 and user.count("[IBAN]") == 1


# Adversarial inputs for each pattern: long runs of what a match is made of, with and without
# the piece that would complete it. Quadratic work on any of them takes minutes at this size.
_ADVERSARIAL = """
n = 200_000
cases = [
    "a" * n, "1" * n, "1 " * (n // 2), "1-" * (n // 2), "@" * n, "a@" * (n // 2),
    "a." * (n // 2), "@a." * (n // 3), ("a" * 255 + "@") * (n // 256),
    ("@" + "a" * 62 + ".") * (n // 64), "DE00 " * (n // 5), "DE" * (n // 2), "A1" * (n // 2),
    "+1 " * (n // 3), "(1" * (n // 2), "a-" * (n // 2), "a@b.c 4111 DE89 " * (n // 16),
    "x" * n + "@example.com", "4" * n + " 4111 1111 1111 1111",
]
"""


def test_redaction_is_linear_on_adversarial_input():
    # CPU seconds, enforced by the kernel (RLIMIT_CPU) in a child process: linear work takes
    # about 0.05 s per case, the old e-mail pattern 250 s on the first. A loaded machine slows
    # the wall clock, not the CPU seconds, so this does not flake.
    script = (
        textwrap.dedent(
            """
        import resource
        resource.setrlimit(resource.RLIMIT_CPU, (20, 20))
        from enrichment.providers.prompts import redact
        """
        )
        + _ADVERSARIAL
        + textwrap.dedent(
            """
        redacted = [redact(case) for case in cases]
        print("ok", len(redacted), redacted[-2].endswith("[EMAIL]"))
        """
        )
    )

    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600
    )

    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["ok", "19", "True"]
