"""Every CL metric against hand-computed values (METHODS.md section 2)."""
import json

import pytest

from citune.evaluation.metrics import compute_metrics

TASKS = ["a", "b", "c"]
BASE = [10.0, 20.0, 30.0]  # R[0][j]
MATRIX = [
    [50.0, 25.0, 35.0],  # after stage 1: R[1][1..3]
    [55.0, 60.0, 45.0],  # after stage 2
    [35.0, 50.0, 80.0],  # after stage 3
]
HELDOUT = ["h1", "h2"]
HELD_BASE = [20.0, 40.0]
HELD_MATRIX = [[22.0, 38.0], [24.0, 44.0], [18.0, 30.0]]


def full(**kw):
    args = dict(tasks=TASKS, matrix=MATRIX, base_row=BASE, heldout=HELDOUT, heldout_matrix=HELD_MATRIX,
                heldout_base_row=HELD_BASE, v_by_stage=[0.5, 0.6, 0.7])
    args.update(kw)
    return compute_metrics(**args)


def test_three_by_three_by_hand():
    m = full()
    # AP_1 = 50; AP_2 = (55 + 60) / 2 = 57.5; AP_3 = (35 + 50 + 80) / 3 = 55
    assert m["ap_by_stage"] == pytest.approx([50.0, 57.5, 55.0])
    assert m["ap"] == pytest.approx(55.0)
    # BWT = ((R31 - R11) + (R32 - R22)) / 2 = ((35 - 50) + (50 - 60)) / 2 = -12.5
    assert m["bwt"] == pytest.approx(-12.5)
    # FWT = ((R12 - R02) + (R23 - R03)) / 2 = ((25 - 20) + (45 - 30)) / 2 = 10
    assert m["fwt"] == pytest.approx(10.0)
    # Forgetting: j=1: max(R11, R21) - R31 = max(50, 55) - 35 = 20; j=2: R22 - R32 = 60 - 50 = 10; mean 15
    assert m["forgetting"] == pytest.approx(15.0)
    # UB = diagonal = [50, 60, 80]
    assert m["ub"] == [50.0, 60.0, 80.0]
    # RG_2 = 100/1 * R21/UB1 = 100 * 55/50 = 110
    # RG_3 = 100/2 * (R31/UB1 + R32/UB2) = 50 * (35/50 + 50/60) = 50 * (0.7 + 0.8333..) = 76.666..
    assert m["rg_by_stage"] == pytest.approx([110.0, 230.0 / 3])
    assert m["relative_gain"] == pytest.approx(230.0 / 3)
    assert m["relative_gain_learned"] is None  # UB is R[j][j] already: no second reading
    # mean = (110 + 76.667) / 2 = 93.333; population std = |110 - 76.667| / 2 = 16.667
    assert m["rg_mean"] == pytest.approx(280.0 / 3)
    assert m["rg_std"] == pytest.approx(50.0 / 3)
    # P_t = mean over held-out: (22+38)/2 = 30, (24+44)/2 = 34, (18+30)/2 = 24; base mean (20+40)/2 = 30
    assert m["p_score_by_stage"] == pytest.approx([30.0, 34.0, 24.0])
    assert m["p_score"] == pytest.approx(24.0)
    assert m["p_score_change"] == pytest.approx(-6.0)
    assert m["v_score_by_stage"] == [0.5, 0.6, 0.7] and m["v_score"] == 0.7


def test_contract_keys_and_json():
    m = full()
    contract = {"tasks", "heldout", "matrix", "heldout_matrix", "ap", "bwt", "fwt", "forgetting", "relative_gain",
                "rg_by_stage", "p_score", "v_score"}
    extra = {"base_row", "heldout_base_row", "ap_by_stage", "rg_mean", "rg_std", "p_score_by_stage",
             "p_score_change", "v_score_by_stage", "ub", "relative_gain_learned"}
    assert set(m) == contract | extra
    assert m["matrix"] == MATRIX and m["base_row"] == BASE and m["heldout_matrix"] == HELD_MATRIX
    json.dumps(m, allow_nan=False)


def test_ub_expert():
    m = full(ub=[100.0, 50.0, 80.0])
    # RG_2 = 100 * 55/100 = 55; RG_3 = 50 * (35/100 + 50/50) = 67.5
    assert m["rg_by_stage"] == pytest.approx([55.0, 67.5])
    # mean 61.25, population std 6.25
    assert m["rg_mean"] == pytest.approx(61.25) and m["rg_std"] == pytest.approx(6.25)
    assert m["ub"] == [100.0, 50.0, 80.0]
    # beside it, RG_3 with UB_j = R[j][j] = [50, 60]: 50 * (35/50 + 50/60) = 76.667 (the default's value)
    assert m["relative_gain_learned"] == pytest.approx(230.0 / 3)
    # the other metrics do not depend on UB
    assert m["bwt"] == pytest.approx(-12.5)


def test_ub_zero_is_skipped():
    m = full(ub=[0.0, 50.0, 80.0])
    # RG_2 has only j=1, skipped -> None; RG_3 keeps j=2 only: 100/1 * 50/50 = 100
    assert m["rg_by_stage"] == [None, pytest.approx(100.0)]
    assert m["relative_gain"] == pytest.approx(100.0)
    assert m["rg_mean"] is None and m["rg_std"] is None


def test_single_task():
    m = compute_metrics(["a"], [[40.0]], [10.0])
    assert m["ap"] == 40.0 and m["ap_by_stage"] == [40.0]
    for key in ("bwt", "fwt", "forgetting", "relative_gain", "rg_by_stage", "rg_mean", "rg_std",
                "p_score", "p_score_by_stage", "p_score_change", "v_score", "heldout_matrix"):
        assert m[key] is None, key
    assert m["heldout"] == []


def test_missing_unseen_evaluation_only_drops_fwt():
    matrix = [[50.0, None, None], [55.0, 60.0, None], [35.0, 50.0, 80.0]]
    m = compute_metrics(TASKS, matrix, BASE)
    assert m["fwt"] is None
    assert m["bwt"] == pytest.approx(-12.5) and m["forgetting"] == pytest.approx(15.0)
    assert m["ap"] == pytest.approx(55.0)


def test_partial_run_pads_missing_rows():
    m = full(matrix=MATRIX[:2], heldout_matrix=HELD_MATRIX[:2], v_by_stage=[0.5, 0.6, None])
    assert m["matrix"][2] == [None, None, None]
    assert m["ap_by_stage"] == [50.0, 57.5, None]
    assert m["ap"] is None and m["bwt"] is None and m["forgetting"] is None
    assert m["rg_by_stage"] == [pytest.approx(110.0), None] and m["relative_gain"] is None
    # FWT only needs R[1][2] and R[2][3], both stored
    assert m["fwt"] == pytest.approx(10.0)
    assert m["p_score_by_stage"] == [30.0, 34.0, None]
    assert m["p_score"] is None and m["p_score_change"] is None and m["v_score"] is None


def test_missing_base_row():
    m = compute_metrics(TASKS, MATRIX, None)
    assert m["fwt"] is None and m["base_row"] == [None, None, None]
    assert m["bwt"] == pytest.approx(-12.5)


def test_none_in_max_window_makes_forgetting_none():
    matrix = [[50.0, 25.0, 35.0], [None, 60.0, 45.0], [35.0, 50.0, 80.0]]
    m = compute_metrics(TASKS, matrix, BASE)
    assert m["forgetting"] is None and m["ap_by_stage"][1] is None
    assert m["bwt"] == pytest.approx(-12.5)


@pytest.mark.parametrize("bad", [
    dict(matrix=[[1.0, 2.0]] * 3),
    dict(matrix=MATRIX + [[1.0, 2.0, 3.0]]),
    dict(matrix=[[float("nan"), 1.0, 1.0]] + MATRIX[1:]),
    dict(base_row=[1.0]),
    dict(heldout_matrix=[[1.0]] * 3),
])
def test_bad_shapes_raise(bad):
    with pytest.raises(ValueError):
        full(**bad)
