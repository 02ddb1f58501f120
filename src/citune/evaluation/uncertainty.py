"""95 % intervals for comparisons: a paired bootstrap over test instances and seeds (METHODS.md §2.2).

Pure statistics on per-instance score arrays; `citune.runs.rundata.instance_scores` reads them
from a run directory. Per resample: draw the seeds with replacement (when there are several), then
for each drawn seed and each task (stream and held-out) the indices of its test instances with
replacement, the same indices for every strategy and every stage; recompute each run's metrics from
its resampled matrices with `compute_metrics` (the one module that computes CL metrics). A
strategy's statistic is the mean over the drawn seeds; a difference is strategy − baseline on the
same draw. Expert upper bounds (`ub`) are passed as they are, not resampled.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping, Sequence

import numpy as np

from citune.evaluation.metrics import compute_metrics

METHOD = "paired bootstrap over test instances within each task and over seeds"
LEVEL = 95.0


@dataclass
class RunScores:
    """One run's per-instance results. Per task (stream, then held-out): the uids of its test instances
    and arrays of shape (K + 1) x n over stages 0..K: `scores`, the primary score ×100 (NaN where the
    stage did not evaluate the task), and `v_ok`, 1 / 0 / NaN (constraint met / not met / unchecked
    or not evaluated)."""
    name: str
    tasks: list[str]
    heldout: list[str]
    uids: dict[str, list[str]]
    scores: dict[str, np.ndarray]
    v_ok: dict[str, np.ndarray]
    ub: list[float] | None = None  # single-task expert upper bounds: fixed, not resampled
    names: list[str] = field(init=False)

    def __post_init__(self):
        self.names = [*self.tasks, *self.heldout]

    def aligned_to(self, uids: Mapping[str, Sequence[str]]) -> "RunScores":
        """The same run with each task's instances in the order of `uids`."""
        order = {n: [self.uids[n].index(u) for u in uids[n]] for n in self.names}
        return replace(self, uids={n: list(uids[n]) for n in self.names},
                       scores={n: self.scores[n][:, order[n]] for n in self.names},
                       v_ok={n: self.v_ok[n][:, order[n]] for n in self.names})


def _none(rows: np.ndarray) -> list[list]:
    return [[None if x != x else x for x in row] for row in rows.tolist()]


def _mean_at(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Per stage and draw, the mean of `values` (stages x n) over the drawn indices `idx` (draws x n)."""
    if values.shape[1] == 0:
        return np.full((values.shape[0], len(idx)), np.nan)
    return values[:, idx].mean(-1)


def resampled_metrics(run: RunScores, draws: Mapping[str, np.ndarray], keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Each metric of `keys` recomputed from `run`'s matrices resampled by `draws` (task -> draws x n
    instance indices); NaN where the metric is None."""
    c = len(draws[run.names[0]])
    k = len(run.tasks)
    means = np.stack([_mean_at(run.scores[n], draws[n]) for n in run.names], -1)  # stages x draws x tasks
    # V-score_t: met / checked constraints over the tasks seen at stage t and the held-out ones
    ok = np.stack([np.nan_to_num(run.v_ok[n])[:, draws[n]].sum(-1) for n in run.names], -1)
    checked = np.stack([(~np.isnan(run.v_ok[n]))[:, draws[n]].sum(-1) for n in run.names], -1)
    seen = np.ones((k + 1, len(run.names)), bool)
    seen[:, :k] = np.tril(np.ones((k + 1, k), bool), -1)
    ok, checked = (ok * seen[:, None]).sum(-1), (checked * seen[:, None]).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        v = np.where(checked > 0, 100.0 * ok / checked, np.nan)
    out = {key: np.full(c, np.nan) for key in keys}
    held = bool(run.heldout)
    for i in range(c):
        m = _none(means[:, i])
        metrics = compute_metrics(run.tasks, [r[:k] for r in m[1:]], m[0][:k], run.heldout,
                                  [r[k:] for r in m[1:]] if held else None, m[0][k:] if held else None,
                                  _none(v[1:, i][None])[0], ub=run.ub)
        for key in keys:
            if metrics[key] is not None:
                out[key][i] = metrics[key]
    return out


def _paired(runs: list[RunScores]) -> list[RunScores]:
    """The runs of one seed, each task's instances in the first run's order; ValueError when they do
    not share the tasks and test instances (pairing is impossible)."""
    first = runs[0]
    for other in runs[1:]:
        if other.names != first.names:
            raise ValueError(f"runs {first.name} and {other.name} have the same seed but other tasks "
                             f"({first.names} vs {other.names}); they cannot be paired")
        for n in first.names:
            if set(other.uids[n]) != set(first.uids[n]) or len(other.uids[n]) != len(first.uids[n]):
                raise ValueError(f"runs {first.name} and {other.name} have the same seed but other test "
                                 f"instances of task {n!r}; they cannot be paired")
    return [first, *(r.aligned_to(first.uids) for r in runs[1:])]


def bootstrap_distributions(runs: Mapping[str, Mapping[object, RunScores | None]], keys: Sequence[str],
                            resamples: int = 1000, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """strategy -> metric -> the statistic (mean over the drawn seeds) of each of `resamples` paired
    bootstrap draws. `runs` maps strategy -> seed -> RunScores; a strategy with a run lacking
    per-instance scores (None) gets NaN everywhere."""
    usable = {s: dict(by_seed) for s, by_seed in runs.items() if all(r is not None for r in by_seed.values())}
    seeds = list(dict.fromkeys(sd for by_seed in usable.values() for sd in by_seed))
    out = {s: {key: np.full(resamples, np.nan) for key in keys} for s in runs}
    if not seeds:
        return out
    rng = np.random.default_rng(seed)
    m = len(seeds)
    slots = rng.integers(0, m, size=(resamples, m)) if m > 1 else np.zeros((resamples, 1), int)
    values = {s: {key: np.full(slots.shape, np.nan) for key in keys} for s in usable}
    for i, sd in enumerate(seeds):
        at = {s: by_seed[sd] for s, by_seed in usable.items() if sd in by_seed}
        paired = dict(zip(at, _paired(list(at.values()))))
        where = np.nonzero(slots == i)
        ref = next(iter(paired.values()))
        draws = {n: rng.integers(0, max(len(ref.uids[n]), 1), size=(len(where[0]), len(ref.uids[n])))
                 for n in ref.names}
        for s, run in paired.items():
            for key, vals in resampled_metrics(run, draws, keys).items():
                values[s][key][where] = vals
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a strategy without the metric: all NaN
        for s in usable:
            out[s] = {key: np.nanmean(v, axis=1) for key, v in values[s].items()}
    return out


def interval(samples: np.ndarray, level: float = LEVEL) -> list[float] | None:
    """The central `level` % percentile interval of the finite samples; None when under half are finite
    (the metric is undefined on most draws)."""
    finite = samples[np.isfinite(samples)]
    if len(finite) == 0 or 2 * len(finite) < len(samples):
        return None
    lo, hi = np.percentile(finite, [(100 - level) / 2, 100 - (100 - level) / 2])
    return [float(lo), float(hi)]


def bootstrap_intervals(runs: Mapping[str, Mapping[object, RunScores | None]], keys: Sequence[str],
                        baseline: str | None = None, resamples: int = 1000, seed: int = 0) -> dict:
    """strategy -> metric -> {"ci": [lo, hi] | None, "diff_ci": [lo, hi] | None}: the 95 % interval of
    the strategy's statistic and of its paired difference from `baseline` (None for the baseline).

    Strategies run on the same seeds are resampled together. While a benchmark is partly run they may
    not be: each strategy's own interval then resamples its own seeds, and its difference from the
    baseline the seeds both have (`shared_seeds`), so that a seed one of them lacks never enters a
    difference unpaired."""
    by_seeds: dict[frozenset, dict] = {}
    for s, by_seed in runs.items():
        by_seeds.setdefault(frozenset(by_seed), {})[s] = by_seed
    dist = {s: d for group in by_seeds.values() for s, d in bootstrap_distributions(group, keys, resamples, seed).items()}
    out = {s: {key: {"ci": interval(dist[s][key]), "diff_ci": None} for key in keys} for s in runs}
    for s in runs:
        if baseline not in runs or s == baseline:
            continue
        pair = dist if set(runs[s]) == set(runs[baseline]) else bootstrap_distributions(
            {x: {sd: runs[x][sd] for sd in shared_seeds(runs[s], runs[baseline])} for x in (s, baseline)}, keys, resamples,
            seed)
        for key in keys:
            out[s][key]["diff_ci"] = interval(pair[s][key] - pair[baseline][key])
    return out


def shared_seeds(a: Iterable, b: Iterable) -> list:
    """The seeds of `a` that `b` has too, in `a`'s order: what a paired difference is over."""
    b = set(b)
    return [sd for sd in a if sd in b]
