"""The retry schedule is pure: no services needed."""

import pytest

from enrichment.core.backoff import RETRY_STEPS_S, delay_bounds_s, retry_delay_s


@pytest.mark.parametrize("n, step_s", list(enumerate(RETRY_STEPS_S, start=1)))
def test_each_retry_waits_its_step_within_the_jitter_bounds(n, step_s):
    low = retry_delay_s(n, rand=lambda: 0.0)
    high = retry_delay_s(n, rand=lambda: 1.0)
    assert low == pytest.approx(step_s * 0.9)
    assert high == pytest.approx(step_s * 1.1)
    assert delay_bounds_s(n) == pytest.approx((low, high))


def test_schedule_is_1m_5m_15m_1h_4h():
    assert RETRY_STEPS_S == (60, 300, 900, 3600, 4 * 3600)


def test_scale_shrinks_every_step_for_the_demo():
    assert retry_delay_s(5, scale=0.001, jitter=0.0) == pytest.approx(14.4)


def test_retries_past_the_schedule_stay_at_the_cap():
    assert retry_delay_s(9, jitter=0.0) == 14_400


def test_jitter_spreads_simultaneous_failures():
    delays = {round(retry_delay_s(1), 6) for _ in range(50)}
    assert len(delays) > 40
    assert all(54 <= d <= 66 for d in delays)


def test_retry_numbers_start_at_one():
    with pytest.raises(ValueError, match="starts at 1"):
        retry_delay_s(0)
