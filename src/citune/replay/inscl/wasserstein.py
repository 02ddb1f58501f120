"""Task distances (METHODS §3.2): 1-Wasserstein between instruction-embedding distributions.

A task is a discrete distribution over its unique instructions' unit vectors; the ground cost
is 1 − cos(x, y), solved exactly by POT's network simplex (`ot.emd2`) or, as an option, by
entropic Sinkhorn. Tasks with more than `max_support` unique instructions are first compressed
by weighted k-means (weights = marginal mass) to centroids carrying their cluster's summed mass.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from citune.models.embeddings import instruction_embeddings, normalise_rows
from citune.seeds import stable_seed

if TYPE_CHECKING:
    from citune.config import Config
    from citune.types import Stream, Task
    from citune.models.loading import ModelBundle

_EMD_ITERS = 10_000_000
_KMEANS_ITERS = 50
_INIT_SAMPLE = 8  # k-means++ seeds on at most max(4096, 8·k) points: its cost is O(n·k·d·log k)


@dataclass
class Support:
    """A discrete distribution: unit-vector atoms (m × d) and their masses (m, summing to 1)."""

    points: np.ndarray
    mass: np.ndarray

    def __len__(self) -> int:
        return len(self.mass)


def instruction_counts(task: "Task") -> tuple[list[str], np.ndarray]:
    """Unique instructions of the training split (first-seen order) and their instance counts."""
    names = task.instructions()
    index = {s: i for i, s in enumerate(names)}
    counts = np.zeros(len(names), dtype=np.float64)
    for x in task.train:
        counts[index[x.instruction]] += 1
    return names, counts


def marginal(counts: Sequence[float], kind: str = "instances") -> np.ndarray:
    """`instances`: each instruction's share of the task's instances; `uniform`: equal weights."""
    counts = np.asarray(counts, dtype=np.float64)
    if len(counts) == 0:
        return counts
    if kind == "uniform":
        return np.full(len(counts), 1.0 / len(counts))
    if kind != "instances":
        raise ValueError(f"unknown marginals {kind!r}")
    return counts / counts.sum()


def compress(points: np.ndarray, mass: np.ndarray, max_support: int, seed: int = 0) -> Support:
    """Weighted k-means to at most `max_support` atoms; each centroid carries its cluster's summed mass.

    k-means++ seeding runs on a random subsample (it dominates the cost at 10^5 points);
    Lloyd iterations then use every point with its mass. Centroids are re-normalised to unit length
    (the cost only looks at directions); empty clusters are dropped.
    """
    points = np.asarray(points, dtype=np.float32)
    mass = np.asarray(mass, dtype=np.float64)
    if len(mass) <= max_support:
        return Support(points, mass / mass.sum())
    from sklearn.cluster import KMeans, kmeans_plusplus
    from sklearn.exceptions import ConvergenceWarning

    rng = np.random.default_rng(seed)
    sub = min(len(mass), max(4096, _INIT_SAMPLE * max_support))
    idx = np.sort(rng.choice(len(mass), size=sub, replace=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        init, _ = kmeans_plusplus(points[idx], max_support, sample_weight=mass[idx], random_state=seed)
        km = KMeans(max_support, init=init, n_init=1, max_iter=_KMEANS_ITERS, random_state=seed)
        labels = km.fit_predict(points, sample_weight=mass)
    summed = np.bincount(labels, weights=mass, minlength=max_support)
    keep = summed > 0
    return Support(normalise_rows(km.cluster_centers_[keep]), summed[keep] / summed[keep].sum())


def cosine_cost(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 − cos between every row of `a` and of `b` (float64, clipped to [0, 2])."""

    def unit(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


    return np.clip(1.0 - unit(a) @ unit(b).T, 0.0, 2.0)


def w1(a: Support, b: Support, solver: str = "emd", reg: float = 0.05) -> float:
    """W1 between two supports with cost 1 − cos; 0 when either is empty (no data, nothing to compare)."""
    import ot

    if len(a) == 0 or len(b) == 0:
        return 0.0
    cost = cosine_cost(a.points, b.points)
    wa, wb = a.mass / a.mass.sum(), b.mass / b.mass.sum()
    if solver == "emd":
        value = ot.emd2(wa, wb, cost, numItermax=_EMD_ITERS)
    elif solver == "sinkhorn":
        value = ot.sinkhorn2(wa, wb, cost, reg, method="sinkhorn_log", numItermax=10_000)
    else:
        raise ValueError(f"unknown solver {solver!r}")
    value = float(value)
    if not np.isfinite(value):
        raise RuntimeError(f"the {solver} solver returned {value}")
    return max(value, 0.0)


def task_support(cfg: "Config", task: "Task", cache_dir: Path, bundle: "ModelBundle | None" = None) -> Support:
    """The (compressed when large) instruction distribution of a task's training split."""
    ins = cfg.replay.inscl
    names, counts = instruction_counts(task)
    if not names:
        return Support(np.zeros((0, 0), np.float32), np.zeros(0))
    points = instruction_embeddings(cfg, names, cache_dir, bundle)
    return compress(points, marginal(counts, ins.marginals), ins.max_support,
                    stable_seed(cfg.seed, "inscl-compress", task.name, bits=32))


def distance_matrix(supports: Sequence[Support], solver: str = "emd", reg: float = 0.05) -> np.ndarray:
    """The symmetric K × K matrix of W1 between supports (zero diagonal)."""
    k = len(supports)
    out = np.zeros((k, k))
    for i in range(k):
        for j in range(i + 1, k):
            out[i, j] = out[j, i] = w1(supports[i], supports[j], solver, reg)
    return out


def stream_distance_matrix(cfg: "Config", stream: "Stream", cache_dir: Path,
                           bundle: "ModelBundle | None" = None) -> np.ndarray:
    """W1 between every pair of tasks of the stream (in stream order)."""
    ins = cfg.replay.inscl
    supports = [task_support(cfg, t, cache_dir, bundle) for t in stream.tasks]
    return distance_matrix(supports, ins.solver, ins.sinkhorn_reg)


def distance_table(names: Sequence[str], matrix: np.ndarray, cfg: "Config") -> dict:
    """The stream's distance matrix with the settings that produced it, as the run stores it."""
    ins = cfg.replay.inscl
    return {
        "tasks": list(names), "matrix": [[round(float(v), 6) for v in row] for row in matrix],
        "encoder": ins.encoder, "marginals": ins.marginals, "solver": ins.solver, "max_support": ins.max_support,
        "cost": "1 - cos",
    }
