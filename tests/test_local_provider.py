"""The local provider: real rules, measured against the generator's true labels."""

from __future__ import annotations

import dataclasses
import statistics
import subprocess
import sys
from dataclasses import replace

import pytest

from enrichment.core.errors import PermanentError, TransientError
from enrichment.core.provider import RecordContext
from enrichment.core.schemas import Classification
from enrichment.core.taxonomy import ALLOWED_ACTIONS, Action, Label
from enrichment.providers.local import LocalProvider
from enrichment.tooling import generate


def _ctx(line: dict, record_id: int = 1, attempt: int = 0) -> RecordContext:
    order, exc = line["order"], line["exception"]
    return RecordContext(
        tenant=line["tenant"],
        record_id=record_id,
        attempt=attempt,
        reason_code=exc["reason_code"],
        severity=exc["severity"],
        notes=exc["notes"],
        order=order["payload"],
        events=order["events"],
    )


def _chain(provider: LocalProvider, ctx: RecordContext):
    """analyze -> classify -> resolve, each stage seeing the previous one's output."""
    analysis = provider.analyze(ctx).result
    ctx = replace(ctx, analysis=analysis)
    classification = provider.classify(ctx).result
    resolution = provider.resolve(replace(ctx, classification=classification)).result
    return analysis, classification, resolution


@pytest.fixture(scope="module")
def evaluated():
    """500 generated records run through the chain: (case, classification, resolution)."""
    provider = LocalProvider()
    out = []
    for i, case in enumerate(generate.generate_cases("demo-3pl", 500, 7), start=1):
        _, classification, resolution = _chain(provider, _ctx(case.line, record_id=i))
        out.append((case, classification, resolution))
    return out


def test_confident_answers_are_accurate(evaluated):
    confident = [(c, cl) for c, cl, _ in evaluated if cl.confidence >= 0.7]
    accuracy = sum(cl.label is c.label for c, cl in confident) / len(confident)

    assert len(confident) >= 0.75 * len(evaluated)
    assert accuracy >= 0.9


def test_clean_cases_are_right_and_mostly_confident(evaluated):
    clean = [(c, cl) for c, cl, _ in evaluated if not c.ambiguous]
    accuracy = sum(cl.label is c.label for c, cl in clean) / len(clean)
    high = sum(cl.confidence >= 0.8 for _, cl in clean) / len(clean)

    assert accuracy >= 0.85
    assert high >= 0.85


def test_ambiguous_cases_are_less_sure_and_not_overconfident(evaluated):
    clean = [(c, cl) for c, cl, _ in evaluated if not c.ambiguous]
    ambiguous = [(c, cl) for c, cl, _ in evaluated if c.ambiguous]
    accuracy = sum(cl.label is c.label for c, cl in ambiguous) / len(ambiguous)
    mean_conf = statistics.mean(cl.confidence for _, cl in ambiguous)

    # Measured: ambiguous 0.83 accuracy at mean confidence 0.88 (the rules-first v1 said
    # 0.80 at 0.67); clean cases 1.0 at 0.999. The structure now settles most conflicts.
    assert accuracy >= 0.75
    assert abs(mean_conf - accuracy) < 0.1
    assert statistics.mean(cl.confidence for _, cl in clean) - mean_conf >= 0.08


def test_resolve_never_proposes_a_disallowed_action(evaluated):
    for _, classification, resolution in evaluated:
        assert set(resolution.actions) <= ALLOWED_ACTIONS[classification.label]
        assert resolution.automatable == bool(resolution.actions)


def test_resolve_stays_in_the_allow_list_whatever_the_label():
    provider = LocalProvider()
    for line in generate.generate_lines("demo-3pl", 60, 2):
        for label in Label:
            forced = Classification(label=label, confidence=0.9, notes="")
            result = provider.resolve(replace(_ctx(line), classification=forced)).result
            assert set(result.actions) <= ALLOWED_ACTIONS[label]


def _case(label: Label, *, ambiguous: bool = False) -> dict:
    cases = generate.generate_cases("demo-3pl", 500, 7)
    return next(c.line for c in cases if c.label is label and c.ambiguous is ambiguous)


def test_payment_failure_retries_and_notifies():
    provider = LocalProvider()
    line = _case(Label.PAYMENT_FAILED)

    _, classification, resolution = _chain(provider, _ctx(line))

    assert classification.label is Label.PAYMENT_FAILED
    assert {Action.RETRY_PAYMENT, Action.NOTIFY_CUSTOMER} <= set(resolution.actions)
    assert resolution.automatable is True


@pytest.mark.parametrize("label", [Label.SYSTEM_ERROR, Label.OTHER])
def test_labels_that_need_a_person_get_no_actions(label):
    provider = LocalProvider()
    forced = Classification(label=label, confidence=0.95, notes="")

    result = provider.resolve(replace(_ctx(_case(label)), classification=forced)).result

    assert result.automatable is False
    assert result.actions == []


def test_a_clean_damage_is_confident_and_a_conflict_is_not():
    provider = LocalProvider()
    clean = _ctx(
        {
            "tenant": "t",
            "order": {
                "payload": {"financial_status": "paid", "shipping_address": None},
                "events": [
                    {"source": "carrier", "type": "package_damaged", "at": "2026-11-20T10:00:00Z",
                     "detail": "box crushed"},
                ],
            },
            "exception": {"reason_code": "DAMAGE", "severity": "high",
                          "notes": "Customer says the parcel arrived crushed, mug broken"},
        }
    )  # fmt: skip
    conflict = replace(clean, reason_code="LATE_PICK", notes="pick late, still not picked")

    assert provider.classify(clean).result.label is Label.DAMAGED_PACKAGE
    assert provider.classify(clean).result.confidence >= 0.8
    # One damage event against a note and a reason code that both say late pick: two
    # problems at once happen (the training sets have them), so neither answer is sure.
    assert provider.classify(conflict).result.confidence < 0.85


def test_no_evidence_at_all_is_other_with_low_confidence():
    ctx = RecordContext("t", 1, 0, "UNKNOWN", "low", None, {}, [])

    result = LocalProvider().classify(ctx).result

    assert result.label is Label.OTHER
    assert result.confidence < 0.5


def test_analyze_reports_the_problems_it_found():
    line = _case(Label.CUSTOMER_UNAVAILABLE)

    analysis = LocalProvider().analyze(_ctx(line)).result

    assert any("delivery_attempted" in p for p in analysis.problems)
    assert analysis.summary


def test_same_input_same_output():
    line = _case(Label.DELIVERY_DELAY, ambiguous=True)

    assert _chain(LocalProvider(), _ctx(line)) == _chain(LocalProvider(), _ctx(line))


def test_stage_call_names_its_source():
    call = LocalProvider().classify(_ctx(_case(Label.PICK_DELAY)))

    assert (call.provider, call.model, call.prompt_version) == ("local", "rules-logreg-v2", None)


def test_reference_label_is_not_even_in_the_context():
    names = {f.name for f in dataclasses.fields(RecordContext)}

    assert "reference_label" not in names and "true_label" not in names


def test_fault_rate_one_always_fails_and_zero_never_does():
    broken, healthy = LocalProvider(fault_rate=1.0), LocalProvider(fault_rate=0.0)
    for i, line in enumerate(generate.generate_lines("demo-3pl", 50, 4), start=1):
        ctx = _ctx(line, record_id=i, attempt=i % 5)
        classified = replace(ctx, classification=Classification(
            label=Label.PICK_DELAY, confidence=0.9, notes=""))  # fmt: skip
        for call in (broken.analyze, broken.classify):
            with pytest.raises(TransientError, match="injected fault"):
                call(ctx)
        with pytest.raises(TransientError, match="injected fault"):
            broken.resolve(classified)
        _chain(healthy, ctx)


def test_partial_fault_rate_is_deterministic_and_depends_on_the_attempt():
    line = next(generate.generate_lines("demo-3pl", 1, 4))

    def failures(provider: LocalProvider, attempt: int) -> set[int]:
        failed = set()
        for record_id in range(1, 1001):
            try:
                provider.analyze(_ctx(line, record_id=record_id, attempt=attempt))
            except TransientError:
                failed.add(record_id)
        return failed

    first = failures(LocalProvider(fault_rate=0.3), attempt=0)

    assert first == failures(LocalProvider(fault_rate=0.3), attempt=0)
    assert first != failures(LocalProvider(fault_rate=0.3), attempt=1)
    assert 200 <= len(first) <= 400


def test_fault_rate_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match="fault_rate"):
        LocalProvider(fault_rate=1.5)


def test_resolve_without_a_classification_is_permanent():
    with pytest.raises(PermanentError):
        LocalProvider().resolve(_ctx(_case(Label.PICK_DELAY)))


def test_a_note_is_read_in_linear_time_and_still_loses_its_addresses():
    # CPU seconds, capped by the kernel (RLIMIT_CPU) in a child process, so a loaded machine
    # cannot flake it: the old `\S+@` pattern needed about 80 s on the first case alone.
    script = """
import resource
resource.setrlimit(resource.RLIMIT_CPU, (20, 20))
from enrichment.providers.local.text import read_note
n = 200_000
cases = ["a" * n, "a" * n + "@x", "1-" * (n // 2) + "x", "x@" * (n // 2), "w " * n]
notes = [read_note(case) for case in cases]
print("ok", len(notes))
print(read_note("write to bob.smith@example.com or +1 555 123 4567 today").text)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    first, cleaned = done.stdout.splitlines()
    assert first == "ok 5"
    assert "@" not in cleaned and "555" not in cleaned and "today" in cleaned
