"""Choosing instances inside one previous task once its quota is known (METHODS §3.6).

Every function returns sorted indices into `task.train`, exactly `min(quota, len(task.train))`
of them, without duplicates; all randomness comes from the generator passed in.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from citune.types import Task
from citune.replay.inscl.insinfo import rates


def instruction_groups(task: Task) -> tuple[list[str], list[list[int]]]:
    """Unique instructions (first-seen order) and the indices of each one's training instances."""
    names = task.instructions()
    index = {s: i for i, s in enumerate(names)}
    groups: list[list[int]] = [[] for _ in names]
    for i, x in enumerate(task.train):
        groups[index[x.instruction]].append(i)
    return names, groups


def descending_order(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices by decreasing score; equal scores in a seeded random order."""
    return np.lexsort((rng.random(len(scores)), -scores))


def _counts(rate: np.ndarray, sizes: np.ndarray, quota: int, order: np.ndarray) -> np.ndarray:
    """c_k = max(1, ⌊rate_k·n⌋) capped at the group size, then topped up or trimmed to exactly n.

    Top-up: one more unused instance per instruction per pass, highest rate first.
    Trim: one fewer per pass, lowest rate first, never below one instance.
    """
    counts = np.minimum(sizes, np.maximum(1, np.floor(rate * quota + 1e-9).astype(int)))
    while counts.sum() < quota:
        for k in order:
            if counts.sum() == quota:
                break
            if counts[k] < sizes[k]:
                counts[k] += 1
    while counts.sum() > quota:
        for k in order[::-1]:
            if counts.sum() == quota:
                break
            if counts[k] > 1:
                counts[k] -= 1
    return counts


def insinfo_sample(task: Task, quota: int, scores: Mapping[str, float], rng: np.random.Generator) -> list[int]:
    """§3.6: the top-InsInfo instructions (one instance each) when the quota is below the number of
    instructions; otherwise instances spread over every instruction in proportion to its InsInfo rate."""
    names, groups = instruction_groups(task)
    quota = min(int(quota), len(task.train))
    if quota <= 0:
        return []
    score = np.array([scores.get(s, 0.0) for s in names], dtype=np.float64)
    order = descending_order(score, rng)
    if quota < len(names):
        return sorted(int(groups[k][rng.integers(len(groups[k]))]) for k in order[:quota])
    sizes = np.array([len(g) for g in groups])
    counts = _counts(rates(score), sizes, quota, order)
    picks = [int(i) for k, g in enumerate(groups) for i in rng.permutation(g)[: counts[k]]]
    return sorted(picks)


def uniform_sample(task: Task, quota: int, rng: np.random.Generator) -> list[int]:
    """`quota` instances drawn uniformly without replacement."""
    quota = min(int(quota), len(task.train))
    return sorted(int(i) for i in rng.choice(len(task.train), size=quota, replace=False))


def spread_sample(groups: Sequence[Sequence[int]], order: Sequence[int], quota: int,
                  rng: np.random.Generator) -> list[int]:
    """Round-robin over instructions in `order` (priority first), one unused random instance per pass."""
    pools = {k: list(rng.permutation(groups[k])) for k in order}
    quota = min(int(quota), sum(len(p) for p in pools.values()))
    picks: list[int] = []
    while len(picks) < quota:
        for k in order:
            if len(picks) == quota:
                break
            if pools[k]:
                picks.append(int(pools[k].pop(0)))
    return sorted(picks)

