"""Exact 1-Wasserstein with cosine cost (METHODS §3.2): hand values, an LP cross-check, marginals, compression."""
import numpy as np
import pytest
from scipy.optimize import linprog

from citune.replay.inscl.wasserstein import Support, compress, cosine_cost, distance_matrix, marginal, w1


def unit(*rows):
    x = np.array(rows, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def lp_w1(a, b, cost):
    """The transport LP solved directly: min <P, C> with P 1 = a, P^T 1 = b, P >= 0."""
    m, n = cost.shape
    rows = [np.kron(np.eye(m)[i], np.ones(n)) for i in range(m)]
    cols = [np.kron(np.ones(m), np.eye(n)[j]) for j in range(n)]
    res = linprog(cost.ravel(), A_eq=np.array(rows + cols), b_eq=np.concatenate([a, b]), bounds=(0, None),
                  method="highs")
    assert res.status == 0
    return res.fun


def test_identical_sets_are_at_distance_zero():
    x = unit([1, 2, 0], [0, 1, 1], [3, 0, 1])
    s = Support(x, np.array([0.5, 0.3, 0.2]))
    assert w1(s, s) == pytest.approx(0.0, abs=1e-12)


def test_orthogonal_unit_vectors_are_at_distance_one():
    assert w1(Support(unit([1, 0]), np.ones(1)), Support(unit([0, 1]), np.ones(1))) == pytest.approx(1.0)
    # opposite directions cost 2
    assert w1(Support(unit([1, 0]), np.ones(1)), Support(unit([-1, 0]), np.ones(1))) == pytest.approx(2.0)


def test_hand_value_with_both_marginals():
    # task A: instruction e1 with 3 instances, e2 with 1; task B: e1 only. Only A's e2 mass moves, at cost 1.
    a_pts, b = unit([1, 0], [0, 1]), Support(unit([1, 0]), np.ones(1))
    assert marginal([3, 1], "instances").tolist() == [0.75, 0.25]
    assert marginal([3, 1], "uniform").tolist() == [0.5, 0.5]
    assert w1(Support(a_pts, marginal([3, 1], "instances")), b) == pytest.approx(0.25)
    assert w1(Support(a_pts, marginal([3, 1], "uniform")), b) == pytest.approx(0.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_a_direct_lp_solution(seed):
    rng = np.random.default_rng(seed)
    xa, xb = rng.normal(size=(4, 5)), rng.normal(size=(3, 5))
    a, b = rng.random(4) + 0.1, rng.random(3) + 0.1
    a, b = a / a.sum(), b / b.sum()
    expected = lp_w1(a, b, cosine_cost(xa, xb))
    assert w1(Support(unit(*xa), a), Support(unit(*xb), b)) == pytest.approx(expected, abs=1e-9)
    assert expected == pytest.approx(w1(Support(unit(*xb), b), Support(unit(*xa), a)), abs=1e-9)  # symmetric


def test_sinkhorn_is_close_to_and_not_below_the_exact_value():
    rng = np.random.default_rng(3)
    sa, sb = Support(unit(*rng.normal(size=(6, 4))), np.full(6, 1 / 6)), Support(unit(*rng.normal(size=(5, 4))),
                                                                                np.full(5, 0.2))
    exact = w1(sa, sb)
    approx = w1(sa, sb, solver="sinkhorn", reg=0.01)
    assert exact - 1e-6 <= approx <= exact + 0.05


def test_compression_keeps_the_mass_of_each_cluster():
    # five tight clusters around orthogonal directions; compressed to five atoms, each carries its cluster's mass
    rng = np.random.default_rng(0)
    centers = np.eye(5, 8)
    points = np.concatenate([c + 0.01 * rng.normal(size=(40, 8)) for c in centers])
    mass = rng.random(200)
    mass /= mass.sum()
    s = compress(points, mass, max_support=5, seed=0)
    assert len(s) == 5 and s.mass.sum() == pytest.approx(1.0)
    expected = sorted(mass.reshape(5, 40).sum(axis=1))
    assert sorted(s.mass) == pytest.approx(expected)
    assert np.linalg.norm(s.points, axis=1) == pytest.approx(np.ones(5), abs=1e-6)
    assert w1(s, Support(points, mass)) < 0.01


def test_compression_only_above_max_support():
    rng = np.random.default_rng(1)
    pts, mass = unit(*rng.normal(size=(30, 6))), np.full(30, 2.0)
    s = compress(pts, mass, max_support=30)
    assert len(s) == 30 and s.mass == pytest.approx(np.full(30, 1 / 30))
    small = compress(pts, mass, max_support=7, seed=0)
    assert len(small) <= 7 and small.mass.sum() == pytest.approx(1.0)


def test_distance_matrix_is_symmetric_with_zero_diagonal():
    sups = [Support(unit([1, 0, 0]), np.ones(1)), Support(unit([0, 1, 0]), np.ones(1)),
            Support(unit([1, 0, 0], [0, 1, 0]), np.array([0.5, 0.5]))]
    m = distance_matrix(sups)
    assert m == pytest.approx(np.array([[0, 1, 0.5], [1, 0, 0.5], [0.5, 0.5, 0]]))
    assert w1(sups[0], Support(np.zeros((0, 3)), np.zeros(0))) == 0.0
