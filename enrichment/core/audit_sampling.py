"""The audit sample's probability for one AI-resolved record: more near the threshold, where
a wrong automated decision is most likely and a review moves the threshold search most, and
never less than the tenant's base rate anywhere (issue 24).

    p = min(1, base_rate * (1 + NEAR_BOOST * max(0, 1 - |confidence - threshold| / NEAR_WIDTH)))

`confidence` is the one the decision compared (calibrated when the record has a map). With
the defaults a record at the threshold is drawn 4x as often as the base rate, one 0.05 above
it 2.5x, one 0.1 or more above it at the base rate. A base rate of 0 (audit off) draws
nothing. The probability is stored on the record and copied to its review; every estimate
weights a review by 1 / it (Horvitz-Thompson, reviews/stats.py), so the figures stay
unbiased whatever the draw favoured.
"""

from __future__ import annotations

import random

NEAR_BOOST = 3.0  # at the threshold: (1 + 3) x the base rate
NEAR_WIDTH = 0.1  # the boost falls linearly to nothing this far from the threshold


def probability(confidence: float | None, threshold: float, base_rate: float) -> float:
    """The draw probability in [0, 1] (pure; see the module docstring)."""
    if base_rate <= 0:
        return 0.0
    if confidence is None:
        return min(1.0, base_rate)
    near = max(0.0, 1.0 - abs(confidence - threshold) / NEAR_WIDTH)
    return min(1.0, base_rate * (1.0 + NEAR_BOOST * near))


def draw(p: float) -> bool:
    """Whether this record is in the sample, with probability p."""
    return random.random() < p
