"""Design by measurement (issue 21): how the 95 % interval of a paired final-AP difference shrinks with
test instances per category and with seeds, estimated from a stored pilot, and what a ±2 AP design costs.

    python benchmarks/power.py [--pilot DIR ...] [--a inscl] [--b random] [--target 2.0] [--train-scale 4]
        [--strategies 10] [--out power]

Model. For seed s, the paired difference of final AP is D_s = mean_j d_js, d_js the mean over category
j's n test instances of a_i - b_i (the same instances for both strategies). Two variance components:
- instance noise: Var(d_js | seed) = v_j / n, v_j the variance over instances of the per-instance
  difference, so Var(D_s | seed) = (1/K^2) sum_j v_j / n;
- seed noise: sigma_seed^2 = Var_s(D_s) - mean_s Var(D_s | seed) (training randomness and the
  replayed data; floored at 0).
With S seeds and n instances per category, the half-width of the 95 % interval of mean_s D_s is
1.96 * sqrt(sigma_seed^2 / S + (1/K^2) sum_j v_j / (n S)). v_j is measured on the pilot's instances and
is assumed not to change with n (the test instances are drawn from the same categories). The pilot's
cost per run (its manifests' stage times) splits into training and evaluation; evaluation scales with n,
so the cost of a design is S * strategies * (train * train_scale + eval * n / n_pilot) (`--train-scale`: the
planned training set over the pilot's). With several pilots the larger of each variance component is
used (a conservative design; 3 seeds estimate a variance poorly). Since sigma_seed^2 from a few seeds is
often floored at 0, its one-sided 95 % upper limit is given too (Var_s(D_s) has S - 1 degrees of
freedom, chi-square under normal D_s; the instance term taken as known), with each design's half-width
at that limit. Writes results/<out>.json.
"""
from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

import numpy as np
from scipy.stats import chi2

from _common import ROOT, write_result

Z = 1.96


def pilot_components(parent: Path, a: str, b: str) -> dict:
    from citune.runs.archive import open_runs
    from citune.runs.rundata import instance_scores, load_run

    with open_runs(parent) as folder:
        runs = {p.name: load_run(p) for p in sorted(folder.glob("*-seed*"))}
        seeds = sorted({r.seed for r in runs.values() if r.strategy in (a, b)})
        diffs, within, eval_s, train_s, n_pilot = [], [], [], [], None
        for seed in seeds:
            ra, rb = runs[f"{a}-seed{seed}"], runs[f"{b}-seed{seed}"]
            sa, sb = instance_scores(ra), instance_scores(rb).aligned_to(instance_scores(ra).uids)
            k = len(sa.tasks)
            per_cat = [sa.scores[t][k] - sb.scores[t][k] for t in sa.tasks]  # final stage, per instance
            n_pilot = statistics.mean(len(x) for x in per_cat)
            diffs.append(float(np.mean([x.mean() for x in per_cat])))
            within.append(sum(float(np.var(x, ddof=1)) / len(x) for x in per_cat) / k ** 2)
            for r in (ra, rb):
                for s in r.stages:
                    train_s.append(s.get("train_seconds", 0.0) + s.get("selection_seconds", 0.0))
                    eval_s.append(max(0.0, s.get("seconds", 0.0) - s.get("train_seconds", 0.0)
                                      - s.get("selection_seconds", 0.0)))
    seed_var = max(0.0, statistics.variance(diffs) - statistics.mean(within)) if len(diffs) > 1 else 0.0
    seed_var_upper = seed_variance_upper(diffs, statistics.mean(within))
    runs_per_seed = 2
    return {"pilot": str(parent.relative_to(ROOT)) if parent.is_relative_to(ROOT) else str(parent), "a": a, "b": b,
            "seeds": seeds, "categories": k, "test_per_category": n_pilot, "differences_by_seed": diffs,
            "mean_difference": statistics.mean(diffs), "instance_variance_sum": statistics.mean(within) * n_pilot,
            "seed_variance": seed_var, "seed_variance_upper": seed_var_upper, "run_train_seconds": sum(train_s) / (len(seeds) * runs_per_seed),
            "run_eval_seconds": sum(eval_s) / (len(seeds) * runs_per_seed)}


def seed_variance_upper(diffs: list[float], within: float, level: float = 0.95) -> float | None:
    """The one-sided `level` upper confidence limit of sigma_seed^2: the sample variance of the seeds'
    differences estimates sigma_seed^2 + within (the instance noise of one seed's difference) with S - 1
    degrees of freedom, so (S - 1) Var_s(D_s) / chi2_{1-level, S-1} - within, floored at 0. None for one seed."""
    if len(diffs) < 2:
        return None
    df = len(diffs) - 1
    return max(0.0, df * statistics.variance(diffs) / float(chi2.ppf(1 - level, df)) - within)


def half_width(c: dict, n: int, seeds: int, seed_variance: str = "seed_variance") -> float:
    """1.96 * sqrt(sigma_seed^2 / S + (1/K^2) sum_j v_j / (n S)); `instance_variance_sum` is (1/K^2) sum_j v_j;
    `seed_variance` names the estimate of sigma_seed^2 to use (the point estimate or its upper limit)."""
    return Z * math.sqrt(c[seed_variance] / seeds + c["instance_variance_sum"] / (n * seeds))


def conservative(pilots: list[dict]) -> dict:
    """One set of components from several pilots: the larger variance of each kind, the mean costs."""
    out = dict(pilots[0])
    out["pilot"] = [p["pilot"] for p in pilots]
    for key in ("instance_variance_sum", "seed_variance", "seed_variance_upper"):
        known = [p[key] for p in pilots if p[key] is not None]
        out[key] = max(known) if known else None
    for key in ("run_train_seconds", "run_eval_seconds"):
        out[key] = statistics.mean(p[key] for p in pilots)
    return out


def cost_hours(c: dict, n: int, seeds: int, strategies: int, train_scale: float = 1.0) -> float:
    per_run = c["run_train_seconds"] * train_scale + c["run_eval_seconds"] * n / c["test_per_category"]
    return seeds * strategies * per_run / 3600


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pilot", type=Path, nargs="+", default=[ROOT / "benchmarks" / "results" / "superni" / d
                                                             for d in ("curriculum-8cat-seeded", "random-8cat-seeded")])
    ap.add_argument("--a", default="inscl")
    ap.add_argument("--b", default="random")
    ap.add_argument("--target", type=float, default=2.0)
    ap.add_argument("--strategies", type=int, default=10, help="strategies of the planned benchmark (for cost)")
    ap.add_argument("--train-scale", type=float, default=4.0, help="planned training instances over the pilot's")
    ap.add_argument("--out", default="power")
    args = ap.parse_args()
    pilots = [pilot_components(p.resolve(), args.a, args.b) for p in args.pilot]
    c = conservative(pilots)
    upper = c["seed_variance_upper"] is not None
    grid = [{"test_per_category": n, "seeds": s, "half_width": round(half_width(c, n, s), 2),
             **({"half_width_seed_upper": round(half_width(c, n, s, "seed_variance_upper"), 2)} if upper else {}),
             "cpu_hours": round(cost_hours(c, n, s, args.strategies, args.train_scale), 1)}
            for n in (3, 8, 16, 32, 64, 128) for s in (3, 5, 10, 20)]
    reach = [g for g in grid if g["half_width"] <= args.target]
    best = min(reach, key=lambda g: g["cpu_hours"]) if reach else None
    result = {**c, "pilots": pilots, "target": args.target, "strategies": args.strategies,
              "train_scale": args.train_scale, "grid": grid, "cheapest_reaching_target": best,
              "seed_floor_half_width_at_20_seeds": round(Z * math.sqrt(c["seed_variance"] / 20), 2)}
    for g in grid:
        at_upper = f"  (±{g['half_width_seed_upper']:6.2f} at σ²_seed's upper limit)" if upper else ""
        print(f"n={g['test_per_category']:4d} seeds={g['seeds']:3d}  ±{g['half_width']:6.2f} AP{at_upper}  "
              f"{g['cpu_hours']:7.1f} CPU h")
    print("components:", {k: (round(v, 3) if isinstance(v, float) else v) for k, v in c.items()
                          if k not in ("differences_by_seed",)})
    print("cheapest design reaching the target:", best)
    print(write_result(args.out, result))


if __name__ == "__main__":
    main()
