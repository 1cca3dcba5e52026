"""The shapes of one record's story (core/story.py builds them): Pydantic models, so the
OpenAPI schema documents them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from enrichment.core.stages import STAGES
from enrichment.core.states import StageStatus

State = Literal["reviewed", "enriched", "escalated", "waiting", "in progress"]


class RecordFields(BaseModel):
    """The record as it is now (AI fields NULL until a stage succeeds)."""

    external_id: str
    reason_code: str
    severity: str
    notes: str | None = Field(description="the customer's note: untrusted text")
    status: str
    order_external_id: str
    order_payload: dict[str, Any]
    order_events: list[dict[str, Any]]
    ai_label: str | None
    ai_confidence: float | None = Field(description="0-1, as the model said it")
    ai_calibrated_confidence: float | None = Field(None, description="None: uncalibrated")
    calibration_version: int | None = Field(None, description="its calibration map's")
    calibration: str | None = Field(None, description='"calibrated 0.71 (map v3)" or so')
    sampling_probability: float | None = Field(None, description="its audit draw's, 0-1")
    ai_notes: str | None
    ai_analysis: dict[str, Any] | None
    ai_resolution: dict[str, Any] | None
    ai_source: dict[str, Any] = Field(description="stage -> provider, model, prompt_version")
    retry_count: int
    next_attempt_at: datetime
    enriched_at: datetime | None
    audit_sample: bool = Field(description="sampled at random for a person to check")
    approval_requested_at: datetime | None = Field(
        None, description="when actions of the tenant's approval_actions began to wait"
    )
    created_at: datetime
    updated_at: datetime
    record_type: str = Field("exception", description='"exception", or "order": a watched order')
    source: str | None = Field(
        None, description='who raised it: null for the tenant, "ai_order_analyzer" for the fleet'
    )
    attached_at: datetime | None = Field(
        None, description="when the tenant's own exception attached to the one the fleet raised"
    )


class StageError(BaseModel):
    at: datetime | None
    error: str


class StageView(BaseModel):
    """One stage from `enrichment_state`: its status now and the errors it has had."""

    stage: str
    status: StageStatus
    at: datetime | None = Field(description="when the stage last changed status")
    error: str | None = Field(description="the error of its latest failure, if it is FAILED")
    errors: list[StageError] = Field(description="its past errors, oldest first (last 20)")


class AttemptView(BaseModel):
    """One stage attempt; stage "reopen" rows are audits whose `detail` keeps what a
    re-enrichment replaced."""

    id: int
    stage: str
    outcome: str
    error: str | None
    latency_s: float
    provider: str
    model: str | None
    prompt_version: str | None
    input_tokens: int
    output_tokens: int
    cache_write_tokens: int
    cache_read_tokens: int
    cost_usd: float
    created_at: datetime
    detail: dict[str, Any] | None = None


class ActionView(BaseModel):
    """status: RECORDED -> DELIVERED -> DONE or FAILED (reported by the receiver, with note);
    AWAITING_APPROVAL (no event yet) -> RECORDED or DECLINED (never sent) by a person."""

    id: int
    action: str
    status: str
    note: str | None
    delivered_at: datetime | None
    reported_at: datetime | None
    created_at: datetime


class EventView(BaseModel):
    """status: pending, delivered, stopped (a 4xx: a person looks) or dead (attempts used up)."""

    id: int
    webhook_id: str = Field(description="the Standard Webhooks webhook-id, evt_<id>")
    type: str
    action_id: int | None
    status: str
    attempts: int
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime


class Escalation(BaseModel):
    escalated_at: datetime
    reason: str | None
    closed_at: datetime | None = Field(description="when a person's review closed it")


class ReviewView(BaseModel):
    """A person's decision: kind "escalation" or "audit", with what the AI said at the time.
    An override is a later review that replaces the one it names."""

    id: int
    kind: str
    reviewer: str
    label: str
    actions: list[str]
    note: str | None = Field(description="the reviewer's note: untrusted text")
    ai_label: str | None = Field(description="the AI's label when the person decided")
    ai_confidence: float | None
    ai_source: dict[str, Any] | None = Field(description="provider, model, prompt_version")
    overrides: int | None = Field(description="the id of the review this one replaces")
    created_at: datetime


class Decision(BaseModel):
    """The final decision, beside the AI's fields (which keep what the AI said)."""

    final_label: str | None
    final_actions: list[str] | None
    decided_by: str = Field(description='"human": a person reviewed the record')
    reviewed_at: datetime | None


class Summary(BaseModel):
    state: State = Field(
        description="reviewed (decided by a person); enriched; escalated; in progress "
        "(claimed and due); waiting (for its due time or a sweep)"
    )
    in_review: bool = Field(
        description="in the review queue: escalated, actions awaiting approval, or audit-sampled"
    )
    total_cost_usd: float
    attempts: int = Field(description="AI stage attempts (reopen audits not counted)")
    failed_attempts: int


class Story(BaseModel):
    """Everything that happened to one record, oldest first."""

    tenant: str
    record: RecordFields
    stages: list[StageView] = Field(description=", ".join(STAGES))
    attempts: list[AttemptView] = Field(description="in time order")
    actions: list[ActionView]
    events: list[EventView]
    escalation: Escalation | None
    reviews: list[ReviewView] = Field(description="oldest first; an override follows the first")
    decision: Decision | None = Field(description="the final decision, once a person made it")
    summary: Summary
