"""A provider whose answers a test writes out in advance, for domain tests of the pipeline.

The wire to a real provider is tested through the fake Anthropic server; this one exists
so a test can say exactly which stage fails and how.
"""

from __future__ import annotations

from collections import defaultdict

from enrichment.core.errors import TransientError
from enrichment.core.provider import RecordContext, StageCall, Usage
from enrichment.core.schemas import Analysis, Classification, Resolution
from enrichment.core.taxonomy import Action, Label

GOOD = {
    "analyze": Analysis(problems=["carrier reported damage"], summary="parcel damaged"),
    "classify": Classification(label=Label.DAMAGED_PACKAGE, confidence=0.92, notes="damage scan"),
    "resolve": Resolution(
        automatable=True,
        actions=[Action.OPEN_CARRIER_CLAIM, Action.RESHIP_ORDER],
        rationale="claim and reship",
    ),
}


class ScriptedProvider:
    name = "scripted"

    def __init__(self, **script):
        """script: stage call name -> list of results or exceptions, consumed in order;
        when a list runs out, the GOOD answer is returned."""
        self.script = {k: list(v) for k, v in script.items()}
        self.calls: dict[str, int] = defaultdict(int)

    def _answer(self, call: str, ctx: RecordContext) -> StageCall:
        self.calls[call] += 1
        queue = self.script.get(call, [])
        item = queue.pop(0) if queue else GOOD[call]
        if isinstance(item, Exception):
            raise item
        return StageCall(item, "scripted", "script-1", "v-test", Usage(10, 5, 0, 0, 0.0001))

    def analyze(self, ctx):
        return self._answer("analyze", ctx)

    def classify(self, ctx):
        return self._answer("classify", ctx)

    def resolve(self, ctx):
        return self._answer("resolve", ctx)


def fail(message: str = "AI timed out") -> TransientError:
    return TransientError(message)
