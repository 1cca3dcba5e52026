"""`enrichment show TENANT EXTERNAL_ID`: one record's story as a terminal timeline.

Notes (the customer's and the reviewers'), errors, event details and model output are
untrusted text: each goes through `safe`,
which drops ANSI escapes and control characters (so customer text cannot move the cursor,
retitle the window, or hide a line) and truncates it. Times are UTC.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from enrichment.cli.report import print_pairs
from enrichment.core import db, story, tenants
from enrichment.core.models import ORDER, RAISED_BY_AI, REOPENED, utcnow
from enrichment.core.settings import get_settings
from enrichment.core.stages import STAGES
from enrichment.core.text import FIELD_MAX, duration, plural, printable

SAME_WRITE = timedelta(seconds=1)  # an outcome and its attempt row are written this close


def safe(text: object, limit: int = FIELD_MAX) -> str:
    """Untrusted text as one printable line ('-' for None)."""
    return "-" if text is None else printable(text, limit)


def when(at: datetime | None) -> str:
    if at is None:
        return "-"
    at = at.astimezone(UTC)
    return f"{at:%Y-%m-%d %H:%M:%S}.{at.microsecond // 1000:03d}"


def usd(value: float) -> str:
    return f"{value:.6f} USD"


@dataclass(frozen=True)
class Happening:
    """One timeline line, sorted by (`sort_at`, `rank`) and shown at `at`."""

    at: datetime
    rank: int
    text: str
    sort_at: datetime | None = None

    def key(self) -> tuple[datetime, int]:
        return self.sort_at or self.at, self.rank


def _decided_by(attempts: list[story.AttemptView], at: datetime) -> datetime:
    """When the attempt that decided something at `at` was written. The outcome's columns
    are computed a moment before its attempt row within one write, so sorting by their own
    time would put "enriched" before the attempt that enriched it."""
    after = [a.created_at for a in attempts if timedelta(0) <= a.created_at - at < SAME_WRITE]
    return min(after, default=at)


def _tokens(a: story.AttemptView) -> str:
    text = f"tokens {a.input_tokens} in / {a.output_tokens} out"
    if a.cache_write_tokens or a.cache_read_tokens:
        text += f", cache {a.cache_write_tokens} write / {a.cache_read_tokens} read"
    return text


def attempt_line(a: story.AttemptView) -> str:
    if a.outcome == REOPENED or a.stage not in STAGES:
        detail = "" if a.detail is None else json.dumps(a.detail, sort_keys=True, default=str)
        text = f"{safe(a.outcome, 32)} (audit, {safe(a.stage, 32)}): {safe(detail)}"
        return text if a.error is None else f"{text}  reason: {safe(a.error)}"
    model = "/".join(safe(x, 64) for x in (a.provider, a.model, a.prompt_version) if x)
    text = (
        f"{a.stage} {safe(a.outcome, 32)}  {duration(a.latency_s)}  {model}  "
        f"{_tokens(a)}  {usd(a.cost_usd)}"
    )
    return text if a.error is None else f"{text}  error: {safe(a.error)}"


def _record_happenings(s: story.Story) -> list[Happening]:
    r = s.record
    found = [Happening(r.created_at, 0, _created(r))]
    if r.attached_at is not None:
        ahead = duration((r.attached_at - r.created_at).total_seconds())
        text = f"the tenant's own exception attached ({safe(r.reason_code, 64)}), {ahead} later"
        found.append(Happening(r.attached_at, 0, text))
    found += [Happening(a.created_at, 1, attempt_line(a)) for a in s.attempts]
    if s.escalation is not None:
        at, text = s.escalation.escalated_at, f"escalated to a person: {safe(s.escalation.reason)}"
        found.append(Happening(at, 2, text, _decided_by(s.attempts, at)))
    if r.enriched_at is not None:
        text = f"enriched: {_label(s)}"
        found.append(Happening(r.enriched_at, 2, text, _decided_by(s.attempts, r.enriched_at)))
    return found


def _created(r: story.RecordFields) -> str:
    if r.record_type == ORDER:
        return "order watched (the order analysis decides when to look again)"
    if r.source == RAISED_BY_AI:
        return "raised by the order analysis (see the order.at_risk event)"
    return f"created ({safe(r.reason_code, 64)}, {safe(r.severity)})"


def _action_happenings(s: story.Story) -> list[Happening]:
    found = []
    for a in s.actions:
        name = safe(a.action, 64)
        found.append(Happening(a.created_at, 3, f"action {name} recorded"))
        if a.delivered_at is not None:
            found.append(Happening(a.delivered_at, 4, f"action {name} delivered"))
        if a.reported_at is not None:
            outcome = f"action {name} reported {safe(a.status, 16)}: {safe(a.note)}"
            found.append(Happening(a.reported_at, 4, outcome))
    return found


def review_line(r: story.ReviewView) -> str:
    """One review as a person reads it: who, which kind, the decision, what the AI said."""
    what = f"{safe(r.label, 32)}, actions {_names(r.actions)}"
    ai = "no AI label" if r.ai_label is None else f"AI said {safe(r.ai_label, 32)}"
    if r.ai_label is not None and r.ai_confidence is not None:
        ai += f" ({r.ai_confidence:.2f})"
    text = f"reviewed by {safe(r.reviewer, 64)} ({safe(r.kind, 16)}): {what}; {ai}"
    if r.overrides is not None:
        text += f"; overrides review {r.overrides}"
    return text if r.note is None else f"{text}  note: {safe(r.note)}"


def _names(actions: list[str] | None) -> str:
    return ", ".join(safe(a, 64) for a in actions) if actions else "none"


def _review_happenings(s: story.Story) -> list[Happening]:
    return [Happening(r.created_at, 3, review_line(r)) for r in s.reviews]


def _event_happenings(s: story.Story) -> list[Happening]:
    return [Happening(e.delivered_at, 4, _delivered(e)) for e in s.events if e.delivered_at]


def _delivered(e: story.EventView) -> str:
    return f"event {e.webhook_id} {safe(e.type, 32)} delivered ({plural(e.attempts, 'attempt')})"


def timeline(s: story.Story) -> list[str]:
    """Every happening, oldest first, as '<time>  <what>'."""
    found = [
        *_record_happenings(s),
        *_review_happenings(s),
        *_action_happenings(s),
        *_event_happenings(s),
    ]
    return [f"{when(h.at)}  {h.text}" for h in sorted(found, key=Happening.key)]


def _label(s: story.Story) -> str:
    r = s.record
    if r.ai_label is None:
        return "no label yet"
    confidence = "-" if r.ai_confidence is None else f"{r.ai_confidence:.2f}"
    calibration = f", {r.calibration}" if r.calibration else ""
    return f"{safe(r.ai_label, 32)} (confidence {confidence}{calibration})"


def _decision(s: story.Story) -> str:
    """The final decision ('-' until a person made one)."""
    d = s.decision
    if d is None:
        return "in the review queue" if s.summary.in_review else "-"
    what = f"{safe(d.final_label, 32)}, actions {_names(d.final_actions)}"
    return f"{what} (by {safe(d.decided_by, 16)}, {when(d.reviewed_at)})"


def _header(s: story.Story) -> None:
    r, m = s.record, s.summary
    done = m.state in ("reviewed", "enriched", "escalated")
    print(f"record {safe(r.external_id)}  order {safe(r.order_external_id)}  tenant {s.tenant}")
    print_pairs(
        [
            ("state", m.state),
            ("label", _label(s)),
            ("decision", _decision(s)),
            ("reason", f"{safe(r.reason_code, 64)}, severity {safe(r.severity, 16)}"),
            ("notes", safe(r.notes)),
            ("AI notes", safe(r.ai_notes)),
            ("attempts", f"{m.attempts} ({m.failed_attempts} failed), retries {r.retry_count}"),
            ("AI cost", usd(m.total_cost_usd)),
            ("next attempt", "-" if done else when(r.next_attempt_at)),
        ]
    )


def _stage_line(v: story.StageView) -> str:
    text = f"{v.stage:<15} {v.status:<11} {when(v.at)}"
    if v.errors:
        text += f"  {plural(len(v.errors), 'error')}, latest: {safe(v.errors[-1].error)}"
    return text


def _action_line(a: story.ActionView) -> str:
    text = f"{safe(a.action, 64):<24} {safe(a.status, 16):<10} recorded {when(a.created_at)}"
    return text if a.note is None else f"{text}  note: {safe(a.note)}"


def _event_line(e: story.EventView) -> str:
    about = "" if e.action_id is None else f" (action {e.action_id})"
    text = f"{e.webhook_id:<10} {safe(e.type, 32)}{about}  {safe(e.status, 16)}, "
    text += plural(e.attempts, "attempt")
    return text if e.last_error is None else f"{text}  last error: {safe(e.last_error)}"


def _section(title: str, lines: list[str]) -> None:
    print(f"{title}:")
    for line in lines or ["none"]:
        print(f"  {line}")


def print_story(s: story.Story) -> None:
    _header(s)
    _section("timeline (UTC)", timeline(s))
    _section("stages", [_stage_line(v) for v in s.stages])
    _section("reviews", [f"{when(r.created_at)}  {review_line(r)}" for r in s.reviews])
    _section("actions", [_action_line(a) for a in s.actions])
    _section("events", [_event_line(e) for e in s.events])


def show(tenant: str, external_id: str) -> int:
    """Print the story of the tenant's record `external_id`. Exit 0; an unknown tenant
    (UnknownTenant) or record (ValueError) is the CLI's one-line error, exit 2."""
    settings = get_settings()
    with db.session_factory(settings.database_url)() as session:
        found = story.story(session, tenants.require(session, tenant), external_id, now=utcnow())
    if found is None:
        raise ValueError(f"tenant {tenant!r} has no record {external_id!r}")
    print_story(found)
    return 0
