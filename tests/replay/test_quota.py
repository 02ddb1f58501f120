"""Quota integerisation (METHODS §3.3): exact sums, caps, redistribution in proportion, ties by order."""
from fractions import Fraction

import numpy as np
import pytest

from citune.replay.quota import allocate, capped_shares, largest_remainder


def test_proportional_with_largest_remainder():
    # shares 1.4, 2.1, 3.5 -> floors 1, 2, 3; the one unit left goes to the largest fraction (0.5)
    assert allocate(7, [0.2, 0.3, 0.5], [100, 100, 100]) == [1, 2, 4]


def test_ties_go_to_the_earlier_task():
    assert allocate(10, [1, 1, 1], [10, 10, 10]) == [4, 3, 3]
    assert allocate(2, [1, 1, 1], [10, 10, 10]) == [1, 1, 0]


def test_cap_excess_goes_to_the_others_in_proportion():
    # shares 5, 5, 10; task 0 capped at 1, its excess 4 split 1:2 -> 6.33, 12.67 -> 6, 13
    assert capped_shares(20, [1, 1, 2], [1, 100, 100]) == [1, Fraction(19, 3), Fraction(38, 3)]
    assert allocate(20, [1, 1, 2], [1, 100, 100]) == [1, 6, 13]
    # a cap reached only after the first redistribution is honoured too
    assert allocate(30, [1, 1, 1], [2, 13, 100]) == [2, 13, 15]  # 10,10,10 -> 2,14,14 -> 2,13,15


def test_total_is_capped_by_what_is_stored():
    assert allocate(100, [1, 5], [3, 4]) == [3, 4]


def test_zero_weights():
    assert allocate(6, [0, 1, 0], [10, 10, 10]) == [0, 6, 0]
    # the weighted task is full: the rest is shared equally by the zero-weight tasks
    assert allocate(6, [0, 1, 0], [10, 2, 10]) == [2, 2, 2]
    assert allocate(5, [0, 0], [10, 10]) == [3, 2]
    assert allocate(5, [1, 1], [0, 10]) == [0, 5]
    assert allocate(0, [1, 2], [5, 5]) == [0, 0]
    assert allocate(5, [], []) == []


def test_invariants_on_random_cases():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 7))
        weights = [float(w) if rng.random() > 0.2 else 0.0 for w in rng.random(n) * 2]
        caps = [int(c) for c in rng.integers(0, 30, n)]
        total = int(rng.integers(0, 120))
        q = allocate(total, weights, caps)
        assert sum(q) == min(total, sum(caps))
        assert all(0 <= a <= c for a, c in zip(q, caps))
        shares = capped_shares(total, weights, caps)
        assert all(abs(a - s) < 1 for a, s in zip(q, shares))  # rounding moves each share by less than one


def test_largest_remainder_on_exact_shares():
    assert largest_remainder([Fraction(7, 3), Fraction(7, 3), Fraction(7, 3)]) == [3, 2, 2]


@pytest.mark.parametrize("args", [(5, [1, 1], [1]), (5, [-1, 1], [3, 3]), (-1, [1], [1]), (5, [float("nan")], [1])])
def test_bad_arguments(args):
    with pytest.raises(ValueError):
        allocate(*args)
