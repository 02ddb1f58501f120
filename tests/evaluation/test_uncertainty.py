"""The paired bootstrap of citune.evaluation.uncertainty on constructed per-instance scores."""
import numpy as np
import pytest

from citune.evaluation.metrics import compute_metrics
from citune.evaluation.uncertainty import (
    RunScores, bootstrap_distributions, bootstrap_intervals, interval, resampled_metrics,
)

TASKS, HELD = ["a", "b", "c"], ["h"]
KEYS = ["ap", "bwt", "forgetting", "relative_gain", "p_score", "v_score"]


def scores(rng, n, noise=0.0, shift=0.0):
    """Per task, a (K + 1) x n array: stage t evaluates the tasks seen so far (all at stage 0) and the
    held-out one; a task scores higher after it was learned."""
    out = {}
    for j, name in enumerate(TASKS + HELD):
        a = np.full((len(TASKS) + 1, n), np.nan)
        for t in range(len(TASKS) + 1):
            if t == 0 or name in HELD or j < t:
                a[t] = rng.uniform(10, 40, n) + (40 if name in TASKS and j < t else 0)
        out[name] = a
    if noise:
        out = {k: v + noise * np.where(np.arange(n) % 2, 1.0, -1.0) for k, v in out.items()}  # mean 0 per stage
    return {k: v + shift for k, v in out.items()}


def make(name, arrays, v_ok=None):
    n = {k: a.shape[1] for k, a in arrays.items()}
    uids = {k: [f"{k}-{i}" for i in range(n[k])] for k in arrays}
    v_ok = v_ok or {k: np.where(np.isnan(a), np.nan, 1.0) for k, a in arrays.items()}
    return RunScores(name, TASKS, HELD, uids, arrays, v_ok)


def pair(n=20, seeds=(1, 2, 3), noise=0.0, shift=10.0):
    """Strategy A and strategy B = A + noise + shift on every instance, at each seed."""
    runs = {"A": {}, "B": {}}
    for s in seeds:
        base = scores(np.random.default_rng(s), n)
        runs["A"][s] = make(f"A-seed{s}", base)
        runs["B"][s] = make(f"B-seed{s}", scores(np.random.default_rng(s), n, noise, shift))
    return runs


def identity(run):
    return {k: np.arange(len(u))[None] for k, u in run.uids.items()}


def test_identity_draw_is_compute_metrics_on_the_means():
    rng = np.random.default_rng(0)
    arrays = scores(rng, 4)
    v_ok = {k: np.where(np.isnan(a), np.nan, 1.0) for k, a in arrays.items()}
    v_ok["a"][1:] = [1.0, 0.0, np.nan, np.nan]  # stage t counts tasks seen at t and the held-out one
    v_ok["h"][:] = [0.0, 0.0, 0.0, 1.0]
    run = make("r", arrays, v_ok)
    got = resampled_metrics(run, identity(run), KEYS + ["p_score_change", "rg_mean", "fwt"])

    def rows(names, stages):
        return [[None if np.isnan(arrays[n][t]).all() else float(arrays[n][t].mean()) for n in names] for t in stages]

    # met of checked: a 1 of 2, b and c 4 of 4 once seen, h 1 of 4
    v = [100 * (1 + 1) / (2 + 4), 100 * (1 + 4 + 1) / (2 + 4 + 4), 100 * (1 + 4 + 4 + 1) / (2 + 4 + 4 + 4)]
    want = compute_metrics(TASKS, rows(TASKS, [1, 2, 3]), rows(TASKS, [0])[0], HELD, rows(HELD, [1, 2, 3]),
                           rows(HELD, [0])[0], v)
    for key in got:
        assert got[key][0] == pytest.approx(want[key] if want[key] is not None else np.nan, nan_ok=True), key
    assert want["v_score"] == pytest.approx(100 * 10 / 14)


def test_a_constant_difference_has_an_exact_interval():
    out = bootstrap_intervals(pair(shift=10.0), KEYS, baseline="A", resamples=500, seed=3)
    assert out["B"]["ap"]["diff_ci"] == pytest.approx([10.0, 10.0])
    assert out["B"]["p_score"]["diff_ci"] == pytest.approx([10.0, 10.0])
    assert out["B"]["bwt"]["diff_ci"] == pytest.approx([0.0, 0.0], abs=1e-9)  # the shift cancels in BWT
    assert out["A"]["ap"]["diff_ci"] is None  # the baseline itself
    lo, hi = out["A"]["ap"]["ci"]
    assert lo < hi and out["B"]["ap"]["ci"] == pytest.approx([lo + 10, hi + 10])


def test_zero_mean_difference_with_large_noise_includes_zero():
    runs = pair(n=40, seeds=(1,), noise=30.0, shift=0.0)
    lo, hi = bootstrap_intervals(runs, ["ap", "p_score"], "A", resamples=1000, seed=0)["B"]["ap"]["diff_ci"]
    assert lo < 0 < hi and hi - lo > 5


def test_seeded():
    runs = pair(noise=20.0, shift=1.0)
    first = bootstrap_intervals(runs, KEYS, "A", resamples=300, seed=7)
    assert bootstrap_intervals(runs, KEYS, "A", resamples=300, seed=7) == first
    assert bootstrap_intervals(runs, KEYS, "A", resamples=300, seed=8)["B"]["ap"] != first["B"]["ap"]


def test_bootstrap_mean_is_near_the_point_estimate():
    runs = pair(n=30, noise=15.0, shift=2.0)
    dist = bootstrap_distributions(runs, ["ap", "p_score"], resamples=2000, seed=1)
    for strategy, by_seed in runs.items():
        for key in ("ap", "p_score"):
            point = np.mean([resampled_metrics(r, identity(r), [key])[key][0] for r in by_seed.values()])
            samples = dist[strategy][key]
            assert abs(samples.mean() - point) < 0.1 * samples.std(), (strategy, key)


def test_interval_narrows_with_more_instances():
    def width(n):
        lo, hi = bootstrap_intervals(pair(n=n, seeds=(1,)), ["ap"], "A", resamples=500, seed=0)["A"]["ap"]["ci"]
        return hi - lo

    assert width(160) < 0.5 * width(10)


def test_seeds_are_resampled():
    """With several seeds whose runs differ by a constant per seed, the interval spans the seeds' spread."""
    runs = {"A": {s: make(f"A-seed{s}", {k: v + 10 * s for k, v in scores(np.random.default_rng(0), 8).items()})
                  for s in (1, 2, 3)}}
    samples = bootstrap_distributions(runs, ["ap"], resamples=400, seed=0)["A"]["ap"]
    point = resampled_metrics(runs["A"][2], identity(runs["A"][2]), ["ap"])["ap"][0]  # the middle seed
    lo, hi = interval(samples)
    assert lo < point - 5 and hi > point + 5  # one seed's instance noise alone is narrower


def test_runs_without_instances_or_unpairable():
    runs = pair(seeds=(1,))
    runs["C"] = {1: None}
    out = bootstrap_intervals(runs, ["ap"], "A", resamples=50)
    assert out["C"]["ap"] == {"ci": None, "diff_ci": None} and out["B"]["ap"]["ci"] is not None
    assert bootstrap_intervals({"A": {1: None}}, ["ap"], "A", resamples=50)["A"]["ap"]["ci"] is None
    other = pair(seeds=(1,))["B"][1]
    other.uids["b"][0] = "elsewhere"
    with pytest.raises(ValueError, match="A-seed1 and B-seed1"):
        bootstrap_intervals({"A": pair(seeds=(1,))["A"], "B": {1: other}}, ["ap"], "A", resamples=10)


def test_instances_are_aligned_by_uid():
    runs = pair(n=6, seeds=(1,), shift=10.0)
    b = runs["B"][1]
    order = [5, 3, 1, 0, 2, 4]  # B stored its rows in another order
    runs["B"][1] = RunScores(b.name, b.tasks, b.heldout, {k: [u[i] for i in order] for k, u in b.uids.items()},
                             {k: a[:, order] for k, a in b.scores.items()}, {k: a[:, order] for k, a in b.v_ok.items()})
    assert bootstrap_intervals(runs, ["ap"], "A", resamples=200)["B"]["ap"]["diff_ci"] == pytest.approx([10, 10])


def test_strategies_on_different_seeds_are_paired_on_the_seeds_they_share():
    """Part-way through a benchmark A has seeds 1-3 and B only seed 1: B − A is over seed 1 alone, exactly
    as if only seed 1 were stored, and each strategy's own interval resamples its own seeds."""
    runs = pair(noise=20.0, shift=1.0)
    partial = {"A": runs["A"], "B": {1: runs["B"][1]}}
    out = bootstrap_intervals(partial, KEYS, "A", resamples=300, seed=7)
    seed1 = bootstrap_intervals({"A": {1: runs["A"][1]}, "B": {1: runs["B"][1]}}, KEYS, "A", resamples=300, seed=7)
    alone = bootstrap_intervals({"A": runs["A"]}, KEYS, None, resamples=300, seed=7)
    for key in ("ap", "p_score"):
        assert out["B"][key]["diff_ci"] == seed1["B"][key]["diff_ci"]
        assert out["B"][key]["ci"] == seed1["B"][key]["ci"]
        assert out["A"][key]["ci"] == alone["A"][key]["ci"]
