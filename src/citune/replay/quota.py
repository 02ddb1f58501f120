"""Integer quotas from weights (METHODS §3.3), shared by InsCL and KPIG.

`allocate` computes the proportional split in exact rational arithmetic, caps it by water-filling
(a capped task's excess goes to the uncapped ones in proportion to their weights), then rounds by
largest remainder with ties broken by task order, so the quotas sum to exactly
min(total, Σ caps) and never exceed a cap.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Sequence


def _check(total: int, weights: Sequence[float], caps: Sequence[int]) -> None:
    if len(weights) != len(caps):
        raise ValueError(f"{len(weights)} weights but {len(caps)} caps")
    if total < 0 or any(c < 0 for c in caps):
        raise ValueError("the total and the caps must be non-negative")
    if any(not math.isfinite(w) or w < 0 for w in weights):
        raise ValueError(f"weights must be finite and non-negative: {list(weights)}")


def _waterfill(amount: Fraction, weights: dict[int, Fraction], caps: Sequence[int]) -> dict[int, Fraction]:
    """Split `amount` ∝ positive `weights`; a share reaching its cap is fixed there and the rest re-split."""
    shares: dict[int, Fraction] = {}
    free = dict(weights)
    while free:
        left = amount - sum(shares.values())
        norm = sum(free.values())
        full = [i for i in free if left * free[i] / norm >= caps[i]]
        if not full:
            shares.update({i: left * free[i] / norm for i in free})
            break
        for i in full:
            shares[i] = Fraction(caps[i])
            del free[i]
    return shares


def capped_shares(total: int, weights: Sequence[float], caps: Sequence[int]) -> list[Fraction]:
    """Exact real-valued shares: proportional to the weights, capped, the excess redistributed in proportion.

    Tasks with zero weight receive nothing unless the positive-weight tasks are all full; what is
    left then goes to them in equal parts (the budget is capped only by what is stored).
    """
    total = min(total, sum(caps))
    positive = {i: Fraction(w) for i, w in enumerate(weights) if w > 0 and caps[i] > 0}
    zero = {i: Fraction(1) for i, w in enumerate(weights) if w == 0 and caps[i] > 0}
    shares = _waterfill(Fraction(total), positive, caps)
    rest = total - sum(shares.values())
    if rest > 0:
        shares.update(_waterfill(rest, zero, caps))
    return [shares.get(i, Fraction(0)) for i in range(len(weights))]


def largest_remainder(shares: Sequence[Fraction]) -> list[int]:
    """Floor every share, then one more unit to the largest fractional parts (ties: lower index first)."""
    floors = [math.floor(s) for s in shares]
    leftover = int(sum(shares)) - sum(floors)
    order = sorted(range(len(shares)), key=lambda i: (-(shares[i] - floors[i]), i))
    for i in order[:leftover]:
        floors[i] += 1
    return floors


def allocate(total: int, weights: Sequence[float], caps: Sequence[int]) -> list[int]:
    """Integer quotas ∝ weights with Σ = min(total, Σ caps) exactly and quota_j ≤ caps[j].

    All-zero weights mean equal shares. Ties in the rounding go to the earlier task.
    """
    _check(total, weights, caps)
    if not weights:
        return []
    return largest_remainder(capped_shares(int(total), weights, [int(c) for c in caps]))
