"""Seeds derived from names: the same keys give the same numbers on every run, rank and machine
(Python's hash() is salted per process, so it cannot be used)."""
from __future__ import annotations

import hashlib

import numpy as np


def stable_seed(*keys: object, bits: int = 64) -> int:
    """A `bits`-bit seed from the sha256 of the keys joined by '|'."""
    return int(hashlib.sha256("|".join(map(str, keys)).encode()).hexdigest()[: bits // 4], 16)


def seeded_rng(*keys: object) -> np.random.Generator:
    """A numpy generator seeded by `stable_seed(*keys)`."""
    return np.random.default_rng(stable_seed(*keys))
