"""InsInfo (METHODS §3.5): how complex (many tags) and how rare (rare tags) an instruction is.

Over the pool of instructions of tasks 1..i (the current task included): N instructions,
f_t = number of instructions carrying tag t, InsInfo(ins) = Σ_{t ∈ tags(ins)} ln(N / f_t).
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Mapping, Sequence

import numpy as np


def insinfo_scores(pool_tags: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """InsInfo of every instruction of the pool (a tag listed twice for one instruction counts once)."""
    tag_sets = {ins: set(tags) for ins, tags in pool_tags.items()}
    n = len(tag_sets)
    freq = Counter(t for tags in tag_sets.values() for t in tags)
    # sorted: the float sum must not depend on set order (hash seeds differ between ranks)
    return {ins: float(sum(math.log(n / freq[t]) for t in sorted(tags))) for ins, tags in tag_sets.items()}


def rates(scores: Sequence[float]) -> np.ndarray:
    """InsInfo / Σ InsInfo inside one task; uniform when every score is 0 (e.g. one shared tag)."""
    s = np.asarray(scores, dtype=np.float64)
    if len(s) == 0:
        return s
    total = s.sum()
    if total <= 0:
        return np.full(len(s), 1.0 / len(s))
    return s / total
