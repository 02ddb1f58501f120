"""The evidence behind the reading of the SuperNI quality benchmark, from its stored result files
(no training): per strategy the mean ± std over seeds of the headline metrics; paired differences
against `none` and `random` on the same seeds (the seed fixes the data order and, in runs made
since commit b81affc, the LoRA initialisation, so a paired difference removes what the seeds
share); how much each stage learns (the diagonal R[j][j] against the base model's R[0][j]) and how much is lost after it; the replay
budget against the new data of a stage; the noise floor (the score step of one test instance); the
final V-score recomputed from the stored predictions with the current checkers; and the cost: a
run's wall time and the share of it spent selecting replay (manifest `selection_seconds` /
`seconds`, summed over the stages); and how far each strategy's replay is from random replay's on
the same seed and stage (from the stored replay.jsonl): the share of its replayed instances that
random replay also chose, and the total-variation distance between the two compositions by source
category (0: the same quotas, 1: disjoint categories).

    python benchmarks/superni_analysis.py [RESULTS_DIR ...]   # default: every benchmarks/results/superni/*/
    python benchmarks/superni_analysis.py RESULTS_DIR --against inscl   # differences from inscl, with intervals

A RESULTS_DIR holds one archive per run (`<strategy>-seed<k>.run.json.gz`, citune.runs.archive; run
directories are read too). Writes `<RESULTS_DIR>/analysis.json` and prints Markdown tables. With `--against STRATEGY` (repeatable) it
writes nothing and prints instead each strategy's paired difference from STRATEGY in the headline
metrics, with the 95 % intervals of `citune compare` (bootstrap over test instances and seeds): the
comparison.md of a results folder takes its differences from random replay only.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
from collections import Counter
import sys
from pathlib import Path

from citune.errors import InputError
from citune.io import atomic_write_text
from citune.report.comparison import comparison_table, diff_cell
from citune.runs.rundir import parse_run_dir_name, run_dir_for
from citune.runs.archive import open_runs

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "benchmarks" / "results" / "superni"
SUPERNI = ROOT.parent / "shared" / "data" / "superni"
PAIRED = ("ap", "relative_gain", "p_score", "v_score_rescored")
DIFFERENCES = {"ap": "final AP", "relative_gain": "final RG", "relative_gain_learned": "final RG (UB R[j][j])",
               "p_score": "P-score", "v_score": "V-score"}
METRICS = ["ap", "bwt", "forgetting", "relative_gain", "rg_mean", "p_score", "p_score_change", "v_score",
           "v_score_rescored"]


def load_runs(results: Path) -> dict[str, dict[int, dict]]:
    """strategy -> seed -> metrics of the finished runs in `results` (one folder per run)."""
    runs: dict[str, dict[int, dict]] = {}
    for path in sorted(results.glob("*-seed*/metrics.json")):
        strategy, seed = parse_run_dir_name(path.parent.name)
        if strategy is None:
            continue
        metrics = json.loads(path.read_text(encoding="utf-8"))
        if metrics.get("matrix") and all(v is not None for v in metrics["matrix"][-1]):
            runs.setdefault(strategy, {})[seed] = metrics
    return runs


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def paired(runs: dict[str, dict[int, dict]], a: str, b: str, key: str) -> dict | None:
    """Mean ± std over the seeds both have of metric(a) − metric(b), and the per-seed signs."""
    seeds = sorted(set(runs.get(a, {})) & set(runs.get(b, {})))
    diffs = [runs[a][s][key] - runs[b][s][key] for s in seeds
             if runs[a][s].get(key) is not None and runs[b][s].get(key) is not None]
    if not diffs:
        return None
    m, sd = mean_std(diffs)
    return {"seeds": seeds, "mean": m, "std": sd, "per_seed": diffs, "wins": sum(d > 0 for d in diffs)}


def learning(metrics: dict) -> dict:
    """What the stages learn and lose: mean over tasks of R[j][j] − R[0][j] (gain when trained),
    of R[j][j] − R[K][j] (loss by the end), and the share of tasks that end below the base model."""
    base, matrix = metrics["base_row"], metrics["matrix"]
    k = len(matrix)
    gain = [matrix[j][j] - base[j] for j in range(k)]
    lost = [matrix[j][j] - matrix[-1][j] for j in range(k - 1)]
    below = [matrix[-1][j] < base[j] for j in range(k)]
    return {"diagonal_gain": statistics.fmean(gain), "lost_by_end": statistics.fmean(lost) if lost else None,
            "tasks_below_base_at_end": sum(below), "tasks": k}


def rescored_v(run: Path, superni_root: Path | None) -> float | None:
    """The final V-score of a stored run recomputed from its last stage's predictions with the
    current checkers (the V-score in metrics.json is the checker's of the day the run was made)."""
    evals = sorted(run.glob("stages/*/eval.json"))
    if not evals or superni_root is None:
        return None
    from citune.config import load_config
    from citune.data import build_stream
    from citune.evaluation.evaluate import build_checkers

    cfg = load_config(run / "config.yaml", [f"data.superni.root={superni_root}"], stored=True)
    stream = build_stream(cfg)
    checkers = build_checkers(stream)
    last = json.loads(evals[-1].read_text(encoding="utf-8"))
    instances = {x.uid: x for t in stream.tasks + stream.heldout for x in t.test}
    seen = [t.name for t in stream.tasks[: last["stage"]]] + [t.name for t in stream.heldout]
    checks = [checkers[name](instances[row["uid"]], row["prediction"])
              for name in seen for row in last["predictions"].get(name, [])]
    checks = [c for c in checks if c is not None]
    return 100.0 * sum(checks) / len(checks) if checks else None


def cost(run: Path) -> dict:
    """Wall seconds of a stored run and the share spent selecting replay (from its manifest)."""
    stages = json.loads((run / "manifest.json").read_text(encoding="utf-8"))["stages"]
    seconds = sum(s.get("seconds") or 0.0 for s in stages)
    selection = sum(s.get("selection_seconds") or 0.0 for s in stages)
    return {"minutes": seconds / 60, "selection_share": 100.0 * selection / seconds if seconds else None}


def replay_sets(run: Path) -> dict[str, list[dict]]:
    """stage folder -> replayed rows of a stored run."""
    out = {}
    for path in sorted(run.glob("stages/*/replay.jsonl")):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if rows:
            out[path.parent.name] = rows
    return out


def against_random(results: Path, strategy: str, seeds: list[int]) -> dict | None:
    """Mean over seeds and stages of the share of replayed instances random replay also chose, and of
    the total-variation distance between the two replay compositions by source category."""
    shared, tv = [], []
    for seed in seeds:
        mine, rand = (replay_sets(run_dir_for(results, name, seed)) for name in (strategy, "random"))
        for stage, rows in mine.items():
            if stage not in rand:
                continue
            theirs = {r["uid"] for r in rand[stage]}
            shared.append(sum(r["uid"] in theirs for r in rows) / len(rows))
            a, b = Counter(r["task"] for r in rows), Counter(r["task"] for r in rand[stage])
            tv.append(0.5 * sum(abs(a[k] / len(rows) - b[k] / len(rand[stage])) for k in sorted(set(a) | set(b))))
    if not shared:
        return None
    return {"shared_with_random": mean_std(shared), "composition_tv": mean_std(tv), "stages": len(shared)}


def stage_budget(results: Path) -> dict | None:
    """Replayed instances against new ones, from a replaying run's manifest (last stage)."""
    for path in sorted(results.glob("random-seed*/manifest.json")):
        stages = [s for s in json.loads(path.read_text(encoding="utf-8"))["stages"] if s.get("train_examples")]
        if stages:
            last = stages[-1]
            return {"last_stage_new": last["train_examples"] - last.get("replay_size", 0),
                    "last_stage_replayed": last.get("replay_size", 0), "stages": len(stages)}
    return None


def fmt(x: float | None, signed: bool = False) -> str:
    return "n/a" if x is None else (f"{x:+.2f}" if signed else f"{x:.2f}")


def fmt_pm(m: float | None, sd: float | None, signed: bool = False) -> str:
    return fmt(m, signed) + ("" if sd is None else f" ± {sd:.2f}")


def analyse(results: Path, superni_root: Path | None = None) -> dict:
    """The analysis of the runs stored in `results` (archives restored into a temporary folder)."""
    with open_runs(results) as restored:
        return analyse_runs(restored, results, superni_root)


def analyse_runs(results: Path, stored: Path, superni_root: Path | None = None) -> dict:
    """The analysis of the run directories in `results`; `stored` is the folder named in the output."""
    runs = load_runs(results)
    for strategy, by_seed in runs.items():
        for seed, metrics in by_seed.items():
            metrics["v_score_rescored"] = rescored_v(run_dir_for(results, strategy, seed), superni_root)
    out = {"results": str(stored.relative_to(ROOT) if stored.is_relative_to(ROOT) else stored),
           "strategies": {}, "paired": {}, "learning": {}, "budget": stage_budget(results)}
    for strategy, by_seed in runs.items():
        out["strategies"][strategy] = {"seeds": sorted(by_seed),
                                       **{k: mean_std([m.get(k) for m in by_seed.values()]) for k in METRICS}}
        out["learning"][strategy] = {k: mean_std([learning(m)[k] for m in by_seed.values()])
                                     for k in ("diagonal_gain", "lost_by_end", "tasks_below_base_at_end")}
        costs = [cost(run_dir_for(results, strategy, seed)) for seed in by_seed]
        out["cost"] = out.get("cost", {})
        out["cost"][strategy] = {k: mean_std([c[k] for c in costs]) for k in ("minutes", "selection_share")}
        if strategy not in ("none", "random"):
            found = against_random(results, strategy, sorted(by_seed))
            if found:
                out.setdefault("replay_vs_random", {})[strategy] = found
    for a in runs:
        for b in ("none", "random"):  # each strategy against the baselines below it: X − none, X − random
            if a not in ("none", b) and b in runs:
                out["paired"][f"{a} − {b}"] = {k: paired(runs, a, b, k) for k in PAIRED}
    config = next(iter(sorted(results.glob("*-seed*/config.yaml"))), None)
    if config is not None and runs:
        import yaml

        tests = (yaml.safe_load(config.read_text(encoding="utf-8"))["eval"] or {}).get("max_test_per_task")
        k = len(next(iter(next(iter(runs.values())).values()))["tasks"])
        if tests:  # one answer flipping moves its category by up to 100/tests, the final AP by that / K
            out["noise_floor"] = {"test_instances_per_task": tests, "category_step": 100.0 / tests,
                                  "final_ap_step": 100.0 / tests / k}
    return out


def print_markdown(a: dict) -> None:
    print(f"### {a['results']}\n")
    print("| strategy | seeds | final AP | BWT | forgetting | final RG | RG mean | P-score | P change | V-score "
          "(stored) | V-score (rescored) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for s, v in a["strategies"].items():
        signed = {"bwt", "p_score_change"}
        print(f"| {s} | {','.join(map(str, v['seeds']))} | "
              + " | ".join(fmt_pm(*v[k], signed=k in signed) for k in METRICS) + " |")
    print("\n| paired difference (same seeds) | final AP | final RG | P-score | V-score (rescored) |")
    print("|---|---|---|---|---|")
    for name, v in a["paired"].items():
        cells = []
        for k in PAIRED:
            d = v[k]
            cells.append("n/a" if d is None else f"{fmt_pm(d['mean'], d['std'], True)} ({d['wins']}/{len(d['per_seed'])} seeds > 0)")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\n| strategy | gain when trained, R[j][j] − R[0][j] | lost by the end, R[j][j] − R[K][j] | tasks below base at the end |")
    print("|---|---|---|---|")
    for s, v in a["learning"].items():
        print(f"| {s} | {fmt_pm(*v['diagonal_gain'], True)} | {fmt_pm(*v['lost_by_end'], True)} | "
              f"{fmt_pm(*v['tasks_below_base_at_end'])} |")
    print("\n| strategy | minutes per run | share of run time selecting replay (%) |")
    print("|---|---|---|")
    for s, v in a.get("cost", {}).items():
        print(f"| {s} | {fmt_pm(*v['minutes'])} | {fmt_pm(*v['selection_share'])} |")
    if a.get("replay_vs_random"):
        print("\n| strategy | replayed instances random replay also chose | composition distance to random (TV) |")
        print("|---|---|---|")
        for s, v in a["replay_vs_random"].items():
            print(f"| {s} | {fmt_pm(*v['shared_with_random'])} | {fmt_pm(*v['composition_tv'])} |")
    if a.get("noise_floor"):
        n = a["noise_floor"]
        print(f"\nNoise floor: {n['test_instances_per_task']} test instances per category, so one answer moves "
              f"its category by up to {n['category_step']:.1f} points and the final AP by up to {n['final_ap_step']:.1f}.")
    if a["budget"]:
        b = a["budget"]
        print(f"\nReplay budget at the last of {b['stages']} stages: {b['last_stage_replayed']} replayed instances "
              f"beside {b['last_stage_new']} new ones.")
    print()


def print_differences(results: Path, baseline: str, rows: list[dict]) -> None:
    seeds = sorted({s for row in rows for s in row["seeds"]})
    print(f"### {results}: paired differences from {baseline}, over the seeds both strategies have (seeds "
          f"stored: {', '.join(map(str, seeds))}; 95 % interval, * when it excludes 0)\n")
    print("| strategy − " + baseline + " | " + " | ".join(DIFFERENCES.values()) + " |")
    print("|---|" + "---|" * len(DIFFERENCES))
    for row in rows:
        if row["vs_baseline"] is not None:
            print(f"| {row['strategy']} | " + " | ".join(diff_cell(row["vs_baseline"].get(k)) for k in DIFFERENCES) + " |")
    print()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="*", type=Path, help="results folders (default: every benchmarks/results/superni/*/)")
    ap.add_argument("--against", action="append", metavar="STRATEGY",
                    help="print the paired differences from STRATEGY instead of the analysis (repeatable)")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    dirs = args.results or sorted(p for p in DEFAULT.iterdir() if p.is_dir())
    for d in dirs:  # every folder checked before anything is written
        if not d.is_dir():
            print(f"{d}: not a results folder", file=sys.stderr)
            return 2
    try:
        if args.against:
            for d in dirs:
                with open_runs(d) as restored:  # the archives restored once for every baseline
                    for baseline in args.against:
                        print_differences(d, baseline, comparison_table(sorted(restored.glob("*-seed*")), baseline))
            return 0
        superni = SUPERNI if (SUPERNI / "tasks").is_dir() else None  # for rescoring; skipped without the data
        for d in dirs:
            a = analyse(d.resolve(), superni)
            atomic_write_text(d / "analysis.json", json.dumps(a, indent=2) + "\n")
            print_markdown(a)
    except InputError as e:
        print(f"{d}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
