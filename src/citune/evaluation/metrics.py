"""Continual-learning metrics from stored score matrices (METHODS.md section 2).

This is the one module that computes CL metrics; the runner, the report and the
comparison all call `compute_metrics`.

Conventions
-----------
- `matrix` is K x K: row i holds the primary scores (ROUGE-L x 100) after stage
  t = i + 1, column j is task j in stream order. In the formulas below R[t][j]
  is 1-based in both t and j, and R[0][j] is `base_row[j]` (the base model).
- An entry is a float or None (not evaluated). A run that stopped early may
  pass fewer than K rows; the missing rows count as None.
- `heldout_matrix` is K x H (held-out tasks), `heldout_base_row` has length H.

Decisions (documented in docs, tested in tests/evaluation/test_metrics.py)
---------------------------------------------------------------
- Missing entries: a metric is None when any entry its formula needs is None.
  Averages are never taken over a silently smaller set of tasks.
- UB_j <= 0 in Relative Gain: the ratio R[t][j] / UB_j is undefined (the model
  never learned task j, so there is nothing to retain); that j is skipped and
  RG_t averages over the remaining j < t (100 / n_kept * sum). If every j < t
  is skipped, RG_t is None.
- rg_std is the population standard deviation (ddof = 0) of RG_2..RG_K: the
  stages of one run are the whole population, not a sample.
- K = 1: BWT, FWT, Forgetting and every RG value (rg_by_stage included) are
  None; AP is R[1][1].
- No held-out tasks: heldout is [], heldout_matrix, P-score and friends None.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

Score = Optional[float]
Row = Sequence[Score]


@dataclass(frozen=True)
class Metric:
    """A headline metric of metrics.json as every table names it (console, run report, comparison)."""

    key: str
    label: str
    definition: str
    higher_is_better: bool = True
    signed: bool = False  # printed with its sign (a change or a transfer)
    optional: bool = False  # shown only where a run has it (a second reading beside another metric)


# The headline metrics, in the order every table shows them.
HEADLINE = (
    Metric("ap", "final AP", "mean over tasks after the last stage"),
    Metric("bwt", "BWT", "backward transfer (negative = forgetting)", signed=True),
    Metric("fwt", "FWT", "forward transfer to not-yet-trained tasks", signed=True),
    Metric("forgetting", "forgetting", "mean drop from the best earlier score", higher_is_better=False),
    Metric("relative_gain", "final RG", "Relative Gain RG_K (% of UB)"),
    Metric("relative_gain_learned", "final RG (UB R[j][j])", "Relative Gain RG_K with UB_j = R[j][j], beside the "
           "experts' when eval.ub = expert", optional=True),
    Metric("rg_mean", "RG mean", "mean RG over stages 2..K (± population std within a run)"),
    Metric("p_score", "P-score", "mean held-out score after the last stage"),
    Metric("p_score_change", "P-score change", "P-score vs the base model", signed=True),
    Metric("v_score", "V-score", "% of checkable outputs meeting their constraints"),
)
METRIC = {m.key: m for m in HEADLINE}


def primary_score(summary: dict) -> Score:
    """A task's primary score from its eval.json summary (runs made before per-task scorers: ROUGE-L)."""
    return summary.get("score", summary.get("rougeL"))


# ---------------------------------------------------------------- helpers

def _clean(x) -> Score:
    if x is None:
        return None
    v = float(x)
    if not math.isfinite(v):
        raise ValueError(f"score {x!r} is not a finite number")
    return v


def _square(matrix: Sequence[Row] | None, k: int, width: int, name: str) -> list[list[Score]]:
    """Validate `matrix` (k rows of `width` columns at most) and pad missing rows with None."""
    rows = [list(r) for r in (matrix or [])]
    if len(rows) > k:
        raise ValueError(f"{name} has {len(rows)} rows for {k} stages")
    out = []
    for i, r in enumerate(rows):
        if len(r) != width:
            raise ValueError(f"{name} row {i + 1} has {len(r)} entries, expected {width}")
        out.append([_clean(x) for x in r])
    return out + [[None] * width for _ in range(k - len(rows))]


def _row(values: Row | None, width: int, name: str) -> list[Score]:
    if values is None:
        return [None] * width
    if len(values) != width:
        raise ValueError(f"{name} has {len(values)} entries, expected {width}")
    return [_clean(x) for x in values]


def _mean(values: Sequence[Score]) -> Score:
    """Mean, or None when the list is empty or holds a None."""
    if not values or any(v is None for v in values):
        return None
    return sum(values) / len(values)


def _pstd(values: Sequence[Score]) -> Score:
    m = _mean(values)
    if m is None:
        return None
    return math.sqrt(sum((v - m) ** 2 for v in values) / len(values))


class _R:
    """R[t][j] with 1-based t and j; t = 0 is the base row."""

    def __init__(self, matrix: list[list[Score]], base_row: list[Score]):
        self.rows = [base_row] + matrix
        self.k = len(matrix)

    def __call__(self, t: int, j: int) -> Score:
        return self.rows[t][j - 1]


# ---------------------------------------------------------------- metrics

def average_performance(r: _R, t: int) -> Score:
    """AP_t = mean over j <= t of R[t][j]."""
    return _mean([r(t, j) for j in range(1, t + 1)])


def backward_transfer(r: _R) -> Score:
    """BWT = 1/(K-1) * sum_{j<K} (R[K][j] - R[j][j])."""
    k = r.k
    if k < 2:
        return None
    terms = [_diff(r(k, j), r(j, j)) for j in range(1, k)]
    return _mean(terms)


def forward_transfer(r: _R) -> Score:
    """FWT = 1/(K-1) * sum_{j=2..K} (R[j-1][j] - R[0][j])."""
    k = r.k
    if k < 2:
        return None
    return _mean([_diff(r(j - 1, j), r(0, j)) for j in range(2, k + 1)])


def forgetting(r: _R) -> Score:
    """Forgetting = mean over j<K of (max_{j<=t<K} R[t][j] - R[K][j])."""
    k = r.k
    if k < 2:
        return None
    terms = []
    for j in range(1, k):
        past = [r(t, j) for t in range(j, k)]
        best = None if any(v is None for v in past) else max(past)
        terms.append(_diff(best, r(k, j)))
    return _mean(terms)


def relative_gain(r: _R, t: int, ub: list[Score]) -> Score:
    """RG_t = 100/(t-1) * sum_{j<t} R[t][j] / UB_j for t >= 2 (UB_j <= 0 skipped)."""
    if t < 2:
        return None
    ratios = []
    for j in range(1, t):
        score, upper = r(t, j), ub[j - 1]
        if score is None or upper is None:
            return None
        if upper > 0:
            ratios.append(score / upper)
    return 100.0 * sum(ratios) / len(ratios) if ratios else None


def _diff(a: Score, b: Score) -> Score:
    return None if a is None or b is None else a - b


def _last(values: Sequence[Score] | None) -> Score:
    return values[-1] if values else None


# ---------------------------------------------------------------- the one entry point

def compute_metrics(
    tasks: Sequence[str],
    matrix: Sequence[Row],
    base_row: Row | None,
    heldout: Sequence[str] | None = None,
    heldout_matrix: Sequence[Row] | None = None,
    heldout_base_row: Row | None = None,
    v_by_stage: Sequence[Score] | None = None,
    ub: Row | None = None,
) -> dict:
    """Every CL metric of METHODS.md section 2 from the stored matrices.

    `ub` gives UB_j per task (e.g. single-task experts); by default UB_j = R[j][j].
    Returns the metrics.json contract keys (tasks, heldout, matrix, heldout_matrix,
    ap, bwt, fwt, forgetting, relative_gain, rg_by_stage, p_score, v_score) plus
    relative_gain_learned (RG_K with UB_j = R[j][j] when `ub` replaces it, else None),
    base_row, heldout_base_row, ap_by_stage, rg_mean, rg_std, p_score_by_stage,
    p_score_change, v_score_by_stage and ub. Absent metrics are None.
    """
    tasks, heldout = list(tasks), list(heldout or [])
    k, h = len(tasks), len(heldout)
    if k == 0:
        raise ValueError("no tasks")
    m = _square(matrix, k, k, "matrix")
    base = _row(base_row, k, "base_row")
    r = _R(m, base)
    learned = [r(j, j) for j in range(1, k + 1)]
    upper = _row(ub, k, "ub") if ub is not None else learned

    ap_by_stage = [average_performance(r, t) for t in range(1, k + 1)]
    rg_by_stage = [relative_gain(r, t, upper) for t in range(2, k + 1)] if k >= 2 else None
    out = {
        "tasks": tasks,
        "heldout": heldout,
        "matrix": m,
        "heldout_matrix": None,
        "ap": ap_by_stage[-1],
        "bwt": backward_transfer(r),
        "fwt": forward_transfer(r),
        "forgetting": forgetting(r),
        "relative_gain": _last(rg_by_stage),
        "relative_gain_learned": relative_gain(r, k, learned) if ub is not None and k >= 2 else None,
        "rg_by_stage": rg_by_stage,
        "p_score": None,
        "v_score": None,
        "base_row": base,
        "heldout_base_row": None,
        "ap_by_stage": ap_by_stage,
        "rg_mean": _mean(rg_by_stage or []),
        "rg_std": _pstd(rg_by_stage or []),
        "p_score_by_stage": None,
        "p_score_change": None,
        "v_score_by_stage": None,
        "ub": upper,
    }
    if h:
        out.update(_p_scores(k, h, heldout_matrix, heldout_base_row))
    if v_by_stage is not None:
        v = [_clean(x) for x in v_by_stage]
        out["v_score_by_stage"], out["v_score"] = v, _last(v)
    return out


def _p_scores(k: int, h: int, heldout_matrix, heldout_base_row) -> dict:
    """P-score_t = mean over held-out tasks of the score after stage t; change from stage 0."""
    hm = _square(heldout_matrix, k, h, "heldout_matrix")
    hbase = _row(heldout_base_row, h, "heldout_base_row")
    by_stage = [_mean(row) for row in hm]
    final = by_stage[-1]
    return {
        "heldout_matrix": hm,
        "heldout_base_row": hbase,
        "p_score": final,
        "p_score_by_stage": by_stage,
        "p_score_change": _diff(final, _mean(hbase)),
    }


def metrics_from_evals(tasks: Sequence[str], heldout: Sequence[str], evals: dict[int, dict],
                       ub: Row | None = None) -> dict:
    """Every metric from a run's eval.json contents (stage index -> eval; 0 is the base model), with
    each task's primary scorer under `scorers` (the one home of the matrix-from-eval.json rule)."""
    k = len(tasks)

    def row(i: int, group: str, names: Sequence[str]) -> list:
        scores = evals.get(i, {}).get(group, {})
        return [primary_score(scores[n]) if n in scores else None for n in names]

    metrics = compute_metrics(
        tasks=tasks, matrix=[row(i, "tasks", tasks) for i in range(1, k + 1)], base_row=row(0, "tasks", tasks),
        heldout=heldout, heldout_matrix=[row(i, "heldout", heldout) for i in range(1, k + 1)] if heldout else None,
        heldout_base_row=row(0, "heldout", heldout) if heldout else None,
        v_by_stage=[evals[i].get("v_score") if i in evals else None for i in range(1, k + 1)], ub=ub)
    found = {}
    for _, ev in sorted(evals.items()):
        for group in ("tasks", "heldout"):
            found.update({name: primary_scorer(summary) for name, summary in (ev.get(group) or {}).items()})
    metrics["scorers"] = {n: found.get(n, "rougeL") for n in [*tasks, *heldout]}
    return metrics


def primary_scorer(summary: dict) -> str:
    """The name of a task's primary scorer in its eval.json summary (ROUGE-L before per-task scorers)."""
    return summary.get("scorer") or "rougeL"
