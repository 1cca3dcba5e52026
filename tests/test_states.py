"""Pure state decisions: no services needed."""

import json
from datetime import UTC, datetime

from enrichment.core.outcomes import OutcomeKind
from enrichment.core.stages import STAGES, STAGES_PER_RECORD, Stage
from enrichment.core.states import (
    StageStatus,
    needs_run,
    next_failure_step,
    next_stage,
    stage_status,
    with_stage,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_unknown_stage_is_pending():
    assert stage_status({}, "classification") is StageStatus.PENDING


def test_with_stage_appends_errors_without_mutating_the_input():
    state = {}
    new = with_stage(state, "classification", StageStatus.FAILED, at=NOW, error="boom")
    assert state == {}
    assert new["classification"]["status"] == "FAILED"
    assert new["errors"] == [f"{NOW.isoformat()} classification: boom"]


def test_errors_are_capped():
    state = {}
    for i in range(30):
        state = with_stage(state, "order_analysis", StageStatus.FAILED, at=NOW, error=str(i))
    assert len(state["errors"]) == 20
    assert state["errors"][-1].endswith(": 29")


def test_completed_stage_is_not_run_again_except_low_confidence_classification():
    done = with_stage({}, "order_analysis", StageStatus.COMPLETED, at=NOW)
    done = with_stage(done, "classification", StageStatus.COMPLETED, at=NOW)
    assert not needs_run(done, "order_analysis", confident=False)
    assert not needs_run(done, "classification", confident=True)
    assert needs_run(done, "classification", confident=False)
    assert needs_run(done, "automation", confident=True)


def test_failure_steps_follow_the_schedule_then_stop():
    steps = []
    count = 0
    while step := next_failure_step(count, max_retries=5, now=NOW, scale=1.0, jitter=0.0):
        count, at = step
        steps.append((at - NOW).total_seconds())
    assert steps == [60, 300, 900, 3600, 14_400]
    assert count == 5


def test_each_stage_has_one_code_name_its_stored_name_and_its_provider_call():
    assert [(s.name, str(s), s.call) for s in STAGES] == [
        ("ANALYZE", "order_analysis", "analyze"),
        ("CLASSIFY", "classification", "classify"),
        ("RESOLVE", "automation", "resolve"),
    ]
    assert STAGES_PER_RECORD == 3 and Stage("classification") is Stage.CLASSIFY


def test_a_stage_is_stored_and_logged_by_its_seed_name():
    state = with_stage({}, Stage.ANALYZE, StageStatus.FAILED, at=NOW, error="boom")
    assert json.loads(json.dumps(state)) == {
        "order_analysis": {"status": "FAILED", "at": NOW.isoformat(), "error": "boom"},
        "errors": [f"{NOW.isoformat()} order_analysis: boom"],
    }
    assert next_stage(state, confident=False) is Stage.ANALYZE


def test_outcome_kinds_keep_the_values_logs_and_task_results_show():
    assert [str(k) for k in OutcomeKind] == [
        "continue", "done", "stale", "retry", "released", "escalated", "deferred",
    ]  # fmt: skip
