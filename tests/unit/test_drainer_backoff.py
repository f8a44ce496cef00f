"""The drainer's retry backoff: a capped exponential ceiling, the wait drawn anywhere below it."""

from __future__ import annotations

import random

import pytest
from runwatch.workers.drainer import BACKOFF_BASE_SECONDS, BACKOFF_CAP_SECONDS, Drainer, backoff_seconds

CEILINGS = [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]


class _Extreme(random.Random):
    """Draws the lower or the upper end of every range, to read the bounds exactly."""

    def __init__(self, upper: bool) -> None:
        super().__init__(0)
        self.upper = upper

    def uniform(self, a: float, b: float) -> float:
        return b if self.upper else a


def test_defaults_are_the_documented_ones():
    assert (BACKOFF_BASE_SECONDS, BACKOFF_CAP_SECONDS) == (0.2, 5.0)


def test_the_ceiling_doubles_from_the_base_up_to_the_cap_and_the_floor_is_zero():
    upper = [backoff_seconds(n, _Extreme(upper=True)) for n in range(1, len(CEILINGS) + 1)]
    assert upper == pytest.approx(CEILINGS)
    assert [backoff_seconds(n, _Extreme(upper=False)) for n in range(1, 9)] == [0.0] * 8
    assert backoff_seconds(3, _Extreme(upper=True), base_seconds=1.0, cap_seconds=3.0) == 3.0


@pytest.mark.parametrize("failures", [1, 2, 3, 5, 6, 40, 1025, 10**6])
def test_every_wait_lies_in_its_bounds_and_the_draws_fill_them(failures):
    rng = random.Random(failures)
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** min(failures - 1, 10))
    waits = [backoff_seconds(failures, rng) for _ in range(2000)]
    assert all(0.0 <= w <= ceiling for w in waits)
    # Jittered, not a constant: the draws reach both ends of the range and its middle.
    assert min(waits) < 0.05 * ceiling and max(waits) > 0.95 * ceiling
    assert sum(0.4 * ceiling <= w <= 0.6 * ceiling for w in waits) > 200


def test_a_drainer_failing_for_hours_does_not_overflow():
    assert 0.0 <= backoff_seconds(10**9, random.Random(1)) <= BACKOFF_CAP_SECONDS


def test_failures_start_at_one():
    with pytest.raises(ValueError, match="failures must be >= 1"):
        backoff_seconds(0, random.Random(1))


def test_two_drainers_draw_different_sequences():
    a, b = (Drainer(None, None, None, stream="s", batch_entries=1) for _ in range(2))
    assert [backoff_seconds(6, a._rng) for _ in range(5)] != [backoff_seconds(6, b._rng) for _ in range(5)]
