"""The three stages of a record's enrichment, in chain order: one name each.

Code names a stage by its member: ANALYZE, CLASSIFY, RESOLVE. The provider's word for it is
the member's name in lower case (`call`): its method, its prompt file, the task's name
(`enrichment.analyze`). The value is the name stored in the database and written to logs
and events (the seed's names, kept without a migration): the keys of `enrichment_state` and
`ai_source`, `enrichment_attempts.stage` and `batches.stage`. This table is the only place
the two meet.
"""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    ANALYZE = "order_analysis"  # read the order and its events, find the problems
    CLASSIFY = "classification"  # one label from the taxonomy, with a confidence
    RESOLVE = "automation"  # confident labels only: the allowed actions, if any

    @property
    def call(self) -> str:
        """The provider's method (and prompt file) for this stage: analyze, classify, resolve."""
        return self.name.lower()


STAGES: tuple[Stage, ...] = tuple(Stage)  # chain order
# A record is enriched by one completed attempt of each stage.
STAGES_PER_RECORD = len(STAGES)
