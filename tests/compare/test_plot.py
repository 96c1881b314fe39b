"""The compare plot's log axis (zoo/compare/plot.py): ticks at round milliseconds. The PNG itself
is drawn from a real compare in test_compare.py (slow)."""

import pytest

from zoo.compare.plot import log_ticks


@pytest.mark.parametrize("lo, hi, ticks", [
    (8, 600, [10, 20, 50, 100, 200, 500]),  # wide: 1-2-5
    (282, 2850, [300, 500, 1000, 2000]),  # a busy machine's lite models
    (11.3, 32.5, [12, 15, 20, 25, 30]),  # three lite models on an idle one: finer steps, still round
])
def test_log_ticks_are_round_numbers_at_least_four_of_them(lo, hi, ticks):
    assert log_ticks(lo, hi) == pytest.approx(ticks)
