"""How long history is kept, and how the pruner removes it (enrichment/history/).

Retention is in whole days (`_DAYS`): the unit operators and the peers state it in (River
24 h, pg-boss 7 days, Temporal 30 days). 0 keeps that kind of row forever. Each day count
is the fleet's default; a tenant's `retention_days` setting overrides any of them
(core/tenant_settings.py). Short for what succeeded, long for what failed, escalated or was
reviewed; reviews and the audit log are never pruned.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from enrichment.core.settings_env import FromEnv, setting

KEEP, ARCHIVE = "keep", "archive"


@dataclass(frozen=True)
class RetentionConfig(FromEnv):
    """History's retention in days (0: kept forever; tenant setting `retention_days`
    overrides each) and the pruner's pace (enrichment/history/pruner.py). Reviews and the
    audit log are never pruned."""

    attempts_succeeded_days: int = setting(
        "ENRICHMENT_RETENTION_ATTEMPTS_SUCCEEDED_DAYS",
        30,
        "stage attempts that did not fail, of records never escalated nor reviewed",
    )
    attempts_failed_days: int = setting(
        "ENRICHMENT_RETENTION_ATTEMPTS_FAILED_DAYS",
        180,
        "failed attempts, `reopen` rows, and every attempt of an escalated or reviewed record",
    )
    events_delivered_days: int = setting(
        "ENRICHMENT_RETENTION_EVENTS_DELIVERED_DAYS",
        7,
        "outbox events delivered to the webhook (by creation time), with their delivery-log rows",
    )
    events_dead_days: int = setting(
        "ENRICHMENT_RETENTION_EVENTS_DEAD_DAYS",
        90,
        "outbox events given up on (`dead`), with their delivery-log rows; `stopped` and"
        " pending events of a tenant with a webhook are never pruned",
    )
    events_pulled_days: int = setting(
        "ENRICHMENT_RETENTION_EVENTS_PULLED_DAYS",
        30,
        "events of a tenant without a webhook (the pull feed's: they stay `pending`); a"
        " poller further behind than this misses them",
    )
    snapshots_days: int = setting(
        "ENRICHMENT_RETENTION_SNAPSHOTS_DAYS",
        30,
        "monitor snapshots (a tenant's newest is always kept: its counters continue from it)",
    )
    alerts_days: int = setting(
        "ENRICHMENT_RETENTION_ALERTS_DAYS",
        90,
        "alert rows resolved and notified (`inactive`), by their last change; a rule that"
        " still exists writes its row again at the next evaluation",
    )
    silences_days: int = setting(
        "ENRICHMENT_RETENTION_SILENCES_DAYS",
        90,
        "alert silences, by their end (`ends_at`): one still muting, or not begun, is kept",
    )
    batches_applied_days: int = setting(
        "ENRICHMENT_RETENTION_BATCHES_APPLIED_DAYS",
        30,
        "Message Batches applied, by `applied_at`, with their `batch_records`",
    )
    batches_given_up_days: int = setting(
        "ENRICHMENT_RETENTION_BATCHES_GIVEN_UP_DAYS",
        90,
        "Message Batches given up, by creation time, with their `batch_records`",
    )
    records: str = setting(
        "ENRICHMENT_RETENTION_RECORDS",
        KEEP,
        "enriched records past ENRICHMENT_RETENTION_RECORDS_DAYS: `keep` them, or `archive`"
        " (needs ENRICHMENT_ARCHIVE_DIR) and remove them with their resolution actions, once"
        " nothing refers to them (attempts, events, reviews, batches, shadow answers)",
        choices=(KEEP, ARCHIVE),
    )
    records_days: int = setting(
        "ENRICHMENT_RETENTION_RECORDS_DAYS",
        365,
        "age (by creation time) past which an enriched record is archived and removed, when"
        " ENRICHMENT_RETENTION_RECORDS is `archive`",
    )
    prune_interval_s: float = setting(
        "ENRICHMENT_PRUNE_INTERVAL_S", 3600.0, "how often beat runs the pruner", low=60.0
    )
    prune_chunk_rows: int = setting(
        "ENRICHMENT_PRUNE_CHUNK_ROWS",
        1000,
        "rows one chunk deletes, in one short transaction of its own",
        low=1,
    )
    prune_pause_s: float = setting(
        "ENRICHMENT_PRUNE_PAUSE_S",
        0.05,
        "the pruner sleeps this between chunks, so the claim and the monitor keep the disk",
        high=10.0,
    )
    prune_max_s: float = setting(
        "ENRICHMENT_PRUNE_MAX_S",
        600.0,
        "one run stops after this; the next run goes on where it stopped (at most 1500: the"
        " task's time limit is 1800)",
        low=1.0,
        high=1500.0,
    )

    def days(self, kind: str) -> int:
        """The fleet's days for one kind of RETAINED (0: kept forever)."""
        return getattr(self, f"{kind}_days")


# The kinds of history with a retention: each is a `<kind>_days` field above, a key of the
# tenant setting `retention_days`, and one policy in enrichment/history/retention.py.
RETAINED = tuple(
    f.name.removesuffix("_days") for f in fields(RetentionConfig) if f.name.endswith("_days")
)
