"""The V2 bars' verdict in ``benchmarks/serving.py``: read from the interval of the A-B-A
rounds' median, not from the median alone."""

from __future__ import annotations

import math

import pytest
from benchmarks.serving import paired_verdict


def test_rounds_all_at_or_above_the_bound_are_met() -> None:
    rounds = [1.02, 1.05, 1.01, 1.03, 1.08, 1.04, 1.02, 1.06, 1.03]
    verdict, low, high = paired_verdict(rounds, 1.0)
    assert verdict == "met"
    assert 1.0 <= low <= 1.03 <= high


def test_rounds_below_the_bound_are_missed() -> None:
    rounds = [0.95, 0.97, 0.93, 0.96, 0.98, 0.94, 0.97, 0.96, 0.95]
    verdict, low, high = paired_verdict(rounds, 1.0)
    assert verdict == "MISSED"
    assert low <= 0.96 <= high < 1.0


def test_a_median_above_the_bound_with_rounds_either_side_is_undecided() -> None:
    # A median of 1.01 that the old reading called met: the noise decides it.
    rounds = [1.10, 0.87, 0.97, 1.01, 0.98, 1.05, 0.95, 1.01, 1.03]
    verdict, low, high = paired_verdict(rounds, 1.0)
    assert verdict == "undecided"
    assert low < 1.0 <= high


@pytest.mark.parametrize("rounds", [[1.2], [1.1, 1.2, 1.3, 1.2, 1.1]])
def test_too_few_rounds_decide_nothing(rounds: list[float]) -> None:
    verdict, low, high = paired_verdict(rounds, 1.0)
    assert verdict == "undecided"
    assert math.isnan(low)
    assert math.isnan(high)
