"""InsInfo on a toy tag pool (METHODS §3.5): Σ ln(N / f_t), rates with the uniform fallback."""
import math

import numpy as np
import pytest

from citune.replay.inscl.insinfo import insinfo_scores, rates


def test_hand_values_on_a_toy_pool():
    pool = {"a": ["x", "y"], "b": ["x"], "c": ["z", "z"], "d": []}  # N = 4; f_x = 2, f_y = 1, f_z = 1
    s = insinfo_scores(pool)
    assert s["a"] == pytest.approx(math.log(4 / 2) + math.log(4 / 1))
    assert s["b"] == pytest.approx(math.log(2))
    assert s["c"] == pytest.approx(math.log(4))  # a tag repeated on one instruction counts once
    assert s["d"] == 0.0


def test_a_tag_carried_by_every_instruction_scores_zero():
    s = insinfo_scores({"a": ["common"], "b": ["common"], "c": ["common", "rare"]})
    assert s["a"] == 0.0 and s["b"] == 0.0
    assert s["c"] == pytest.approx(math.log(3))


def test_rates():
    assert rates([1.0, 3.0]) == pytest.approx([0.25, 0.75])
    assert rates([0.0, 0.0, 0.0]) == pytest.approx(np.full(3, 1 / 3))  # every score 0: uniform
    assert rates([0.0, 2.0]) == pytest.approx([0.0, 1.0])
    assert len(rates([])) == 0
