"""Quality of the replay strategies on the SuperNI-16 stream (METHODS.md §5): `citune compare` with
the embedded SmolLM2-135M-Instruct + LoRA, several seeds, two category orders, at a CPU scale.

    python benchmarks/superni_quality.py                      # the whole benchmark (hours; resumable)
    python benchmarks/superni_quality.py --orders curriculum --strategies none,random --seeds 1
    python benchmarks/superni_quality.py --categories 16      # the whole 16-category stream
    python benchmarks/superni_quality.py --smoke              # tiny random model, 2 categories: ~1-2 min
    python benchmarks/superni_quality.py --dry-run            # what would run, and the scale; no training
    python benchmarks/superni_quality.py --tag big data.max_train_per_task=32 ...   # another scale, apart

What runs (defaults): the first 8 categories (CATEGORIES) of order `curriculum` with none, random,
inscl, kpig, inscl-dynamic, inscl-insinfo and multitask, and of order `random` with none, random,
inscl, kpig; seeds 1, 2, 3 each. `--strategies` replaces the list of every order. Each order is one
`citune compare` parent directory under `--out` (default benchmarks/runs/superni/<order>[-<N>cat],
big, not committed); after every run it is packed into one archive,
benchmarks/results/superni/<order>[-<N>cat]/<strategy>-seed<k>.run.json.gz (citune.runs.archive:
metrics.json, manifest.json, config.yaml, inscl_distances.json, and each stage's eval.json with the
predictions and replay.jsonl with what was replayed, byte for byte; no plots, reports or weights),
and the comparison (comparison.json/.md, report.md, plots/*.png) is rebuilt there over every run
stored so far, with benchmark.json (the command, machine, date and scale of each invocation).
Running the same command again skips runs stored there with the same config (even when their big
run directories are gone, on a new machine) and resumes a partial one from its first stage not done,
so the benchmark can span several sessions. `python benchmarks/pack_results.py --unpack SRC DEST`
restores a stored benchmark as run directories (for `citune report DEST`).

The scale (SCALE below, recorded in benchmark.json and printed): see the comment there for how it was
calibrated. Results go into docs/BENCHMARKS.md with the command, machine and date.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, SUPERNI  # noqa: E402  (sets OMP_WAIT_POLICY before torch loads)
from _stored import exit_code, git_commit, run_stored, schedule, stored_finished, yaml_list  # noqa: E402

CONFIG = ROOT / "examples" / "superni16.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "superni"

STRATEGIES = {
    # the four strategies of both orders first, so that a partial benchmark answers the main question
    "curriculum": ["none", "random", "inscl", "kpig", "inscl-dynamic", "inscl-insinfo", "multitask"],
    "random": ["none", "random", "inscl", "kpig"],
}

# The CPU scale, on top of examples/superni16.yaml (SmolLM2-135M-Instruct, LoRA r 16, lr 3e-4).
# Calibrated on this machine kind (2 cores, no GPU); see benchmarks/README.md for the measurements
# and the cost model behind COST. Evaluation dominates a run (stage t evaluates t categories), so the
# test side is the smallest that still scores every category of every stage.
SCALE = [
    "data.superni.per_source_cap=8",  # instances read per SuperNI task (4-8 tasks per category)
    "data.max_train_per_task=16",  # training instances per category
    "data.test_size=3",  # test instances per category, shared between its SuperNI tasks
    "data.superni.heldout_categories=[Textual Entailment,Title Generation]",
    "eval.max_test_per_task=3",  # also the held-out categories: 3 of their 16 instances
    "eval.eval_unseen=false",  # seen categories and held-out ones only: FWT is n/a
    "eval.max_new_tokens=16",
    "eval.batch_size=32",  # a stage's prompts of all categories pooled into few batches
    "train.epochs=1",
    "train.batch_size=4",  # 4 optimizer steps per category
    "train.max_length=192",  # median SuperNI prompt 132 tokens, 9 of 48 test prompts longer
    "replay.per_task=2",  # replayed instances per previous category (1/8 of its training data)
    "replay.kpig.probe=4",  # KPIG scores probe ∪ pool of every previous category at every stage
    "replay.kpig.pool=4",
]

# Measured on an idle machine (2026-12-01): seconds per training example pass, per evaluated
# category (3 prompts, pooled generation and scoring), KPIG's selection per previous category,
# KPIG's training cost factor (its IG objective adds a forward and backward pass of the masked
# instruction), and the per-run overhead (model and encoder loading).
COST = {"pass": 1.1, "task_eval": 2.7, "kpig_selection": 1.8, "kpig_train_factor": 2.0, "run_overhead": 20.0}

# The stream length is part of the scale: with the first 8 categories of an order every strategy,
# multitask included, finishes within 15 minutes here (COST); the whole stream (16) takes 12 minutes
# for `none` and about an hour for `multitask` per run.
CATEGORIES = 8


def projected_seconds(stream, cfg, strategy: str, cost: dict = COST) -> float:
    """A run's wall time under COST: training passes, then the evaluations of every stage (the base
    model on every category, stage t on the t seen ones unless eval_unseen, and the held-out ones)."""
    k = len(stream.tasks)
    epochs, per_task = cfg.train.epochs, cfg.replay.per_task
    passes = 0
    for t, task in enumerate(stream.tasks):
        previous = stream.tasks[:t]
        if strategy == "none":
            replay = 0
        elif strategy == "multitask":
            replay = sum(len(p.train) for p in previous)
        else:
            replay = sum(min(per_task, len(p.train)) for p in previous)
        passes += epochs * (len(task.train) + replay)
    evals = k + len(stream.heldout) + sum((k if cfg.eval.eval_unseen else t) + len(stream.heldout)
                                          for t in range(1, k + 1))
    seconds = cost["run_overhead"] + passes * cost["pass"] + evals * cost["task_eval"]
    if strategy == "kpig":
        seconds += passes * cost["pass"] * (cost["kpig_train_factor"] - 1) + cost["kpig_selection"] * k * (k - 1) / 2
    return seconds


def expert_seconds(stream, cfg, cost: dict) -> float:
    """The single-task experts of one seed (`eval.ub=expert`; trained by the seed's first run, then cached)."""
    if cfg.eval.ub != "expert":
        return 0.0
    return sum(cfg.train.epochs * len(t.train) * cost["pass"] + cost["task_eval"] for t in stream.tasks)


# --design powered: the design chosen by benchmarks/power.py (docs/BENCHMARKS.md, "Designing the powered
# benchmark"): 32 test instances per category (every SuperNI task of a category represented), 64
# training instances per category, 8 replayed per previous category (1/8 of its training data, the
# pilot's share), 5 seeds, ten methods, and each seed's single-task experts so that Relative Gain has
# both upper bounds (R[j][j] recomputes from the stored matrix; the experts are cached per seed).
POWERED = [
    "data.superni.per_source_cap=24",  # 8 tasks x 24 >= 96 = 64 train + 32 test per category
    "data.max_train_per_task=64",
    "data.test_size=32",
    "data.superni.heldout_categories=[Textual Entailment,Title Generation]",
    "eval.max_test_per_task=32",
    "eval.eval_unseen=false",
    "eval.max_new_tokens=16",
    "eval.batch_size=32",
    "eval.ub=expert",
    "train.epochs=1",
    "train.batch_size=8",  # 8 optimizer steps per category
    "train.max_length=192",
    "replay.per_task=8",
    "replay.kpig.probe=8",
    "replay.kpig.pool_factor=2",
]
# Measured at the powered scale (2026-12-07, `random` seed 1, stages 4-8, a214db2: packed prefill, 2-core
# AMD EPYC Zen 3, the machine otherwise idle): 0.84-1.03 s per example pass at batch 8, and 10-17 s per
# evaluated category of 32 prompts (mean 12.6). KPIG's factors are the pilot's, not yet measured here.
POWERED_COST = {**COST, "pass": 0.92, "task_eval": 12.6}
POWERED_STRATEGIES = ["none", "random", "inscl", "kpig", "multitask", "inscl-dynamic", "inscl-insinfo", "ewc", "lwf",
                      "olora"]
POWERED_SEEDS = "1,2,3,4,5"
# The design's question (InsCL - random, and both against no replay and KPIG) over every seed first: the
# seed-to-seed variance decides whether ±2 AP is reached, and only these four runs of a seed estimate it.
POWERED_FIRST = ["none", "random", "inscl", "kpig"]


# --smoke: the pipeline end to end in a minute or two, nothing measured.
SMOKE = [
    "model.name=tiny", "model.finetune=full", "train.lr=0.003", "train.epochs=1", "train.max_length=128",
    "data.superni.per_source_cap=3", "data.test_size=4", "data.max_train_per_task=12",
    "data.superni.heldout_categories=[Textual Entailment]", "eval.max_test_per_task=4",
    "eval.eval_unseen=false", "eval.max_new_tokens=8", "replay.per_task=4",
]


def find_superni(explicit: str | None) -> Path:
    """The SuperNI data: --superni-root, else ../shared/data/superni beside the checkout, else
    shared/data/superni inside it."""
    for cand in ([Path(explicit)] if explicit else [SUPERNI, ROOT / "shared" / "data" / "superni"]):
        if (cand / "streams").is_dir() and (cand / "tasks").is_dir():
            return cand.resolve()
    sys.exit(f"SuperNI data not found ({explicit or SUPERNI}); pass --superni-root DIR")


def configured_root(config: Path) -> Path | None:
    from citune.config import load_config, resolve_path

    cfg = load_config(config)
    path = resolve_path(cfg, cfg.data.superni.root)
    return path.resolve() if path.is_dir() else None


def check(config: Path, strategies: list[str], overrides: list[str], seeds: int, cost: dict = COST) -> None:
    """Validate the config, the strategies and the stream; print the stream's sizes and the projected
    time of each run (COST)."""
    from citune.config import load_config
    from citune.data import build_stream
    from citune.replay import get_strategy

    cfg = load_config(config, overrides)
    for s in strategies:
        get_strategy(s, cfg)
    stream = build_stream(cfg)
    cap = cfg.eval.max_test_per_task or 10 ** 9
    sizes = ", ".join(f"{t.name} {len(t.train)}/{min(cap, len(t.test))}" for t in stream.tasks)
    held = ", ".join(f"{t.name} {min(cap, len(t.test))}" for t in stream.heldout)
    print(f"   stream (train/evaluated test): {sizes}\n   held-out (evaluated): {held or 'none'}", flush=True)
    if cfg.model.name == "tiny":
        return
    minutes = {s: projected_seconds(stream, cfg, s, cost) / 60 for s in strategies}
    experts = expert_seconds(stream, cfg, cost) / 60
    print("   projected minutes per run on an idle machine (COST; under load: up to twice): "
          + ", ".join(f"{s} {m:.0f}" for s, m in minutes.items())
          + (f"; experts {experts:.0f} per seed" if experts else "")
          + f"; all {seeds} seed(s): {(sum(minutes.values()) + experts) * seeds / 60:.1f} h", flush=True)


def order_categories(root: Path, order: str) -> list[str]:
    spec = json.loads((root / "streams" / "superni16.json").read_text(encoding="utf-8"))
    if order not in spec["orders"]:
        sys.exit(f"unknown order '{order}' (known: {', '.join(spec['orders'])})")
    return list(spec["orders"][order])


def benchmark(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overrides", nargs="*", help="extra dotted config overrides (key=value), applied last")
    ap.add_argument("--orders", default="curriculum,random", help="category orders (curriculum, random, reverse)")
    ap.add_argument("--strategies", default=None,
                    help="comma-separated strategies for every order (default: the list of each order)")
    ap.add_argument("--seeds", default=None, help=f"default 1,2,3 (--design powered: {POWERED_SEEDS})")
    ap.add_argument("--categories", type=int, default=None,
                    help=f"the first N categories of each order (default {CATEGORIES}; 16: the whole stream)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "runs" / "superni",
                    help="parent of the run directories (big; not committed)")
    ap.add_argument("--results", type=Path, default=None,
                    help=f"where each run's archive and the comparison are stored "
                         f"(default {RESULTS.relative_to(ROOT)}; "
                         "with --smoke: OUT/smoke-results)")
    ap.add_argument("--tag", default=None,
                    help="a name added to the run and result folders (<order>[-<N>cat]-<tag>), for runs at "
                         "another scale (extra overrides) that must not mix with the benchmark's own")
    ap.add_argument("--config", type=Path, default=CONFIG)
    ap.add_argument("--superni-root", default=None, help="the SuperNI data directory (streams/, tasks/)")
    ap.add_argument("--design", choices=["pilot", "powered"], default="pilot",
                    help="pilot: the calibrated CPU scale (SCALE, 3 test instances per category); powered: the "
                         "design of benchmarks/power.py (POWERED: 32 test, 64 train per category, 5 seeds, ten "
                         "methods; results under <order>-8cat-powered)")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny random model and very small caps: checks the pipeline in ~1-2 minutes")
    ap.add_argument("--dry-run", action="store_true", help="print what would run and the scale; no training")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.quiet:
        os.environ["CITUNE_QUIET"] = "1"
    from rich.console import Console

    from citune.compare import print_comparison

    root = find_superni(args.superni_root)
    powered = args.design == "powered"
    seeds = [int(s) for s in (args.seeds or (POWERED_SEEDS if powered else "1,2,3")).split(",") if s.strip()]
    orders = [o.strip() for o in args.orders.split(",") if o.strip()]
    scale = SMOKE if args.smoke else POWERED if powered else SCALE
    if powered and not args.smoke:
        args.tag = "-".join(filter(None, ["powered", args.tag]))
    if args.categories is None:
        args.categories = 2 if args.smoke else CATEGORIES
    if args.results is None:
        args.results = args.out / "smoke-results" if args.smoke else RESULTS
    # smoke runs never mix with the real ones
    suffix = (("-smoke" if args.smoke else "") + (f"-{args.categories}cat" if args.categories < 16 else "")
              + (f"-{args.tag}" if args.tag else ""))

    commit = git_commit()  # at the start: the code this process runs, whatever is committed while it runs
    for order in orders:
        cats = order_categories(root, order)
        if args.categories:
            cats = cats[: args.categories]
        strategies = ([s.strip() for s in args.strategies.split(",") if s.strip()] if args.strategies
                      else POWERED_STRATEGIES if powered else STRATEGIES.get(order, STRATEGIES["random"]))
        overrides = [f"data.superni.order={order}", f"data.superni.categories={yaml_list(cats)}", *scale,
                     *args.overrides]
        if configured_root(args.config) != root:  # keep the config's own (relative) root when it finds the data
            overrides.insert(0, f"data.superni.root={root}")
        parent = args.out / f"{order}{suffix}"
        dest = args.results / f"{order}{suffix}"
        info = {"order": order, "categories": cats, "tag": args.tag,
                "strategies": strategies, "seeds": seeds, "config": str(args.config.relative_to(ROOT)
                                                                        if args.config.is_relative_to(ROOT)
                                                                        else args.config),
                "scale": scale, "overrides": args.overrides, "smoke": args.smoke, "run_parent": str(parent)}
        print(f"== order {order}: {len(cats)} categories, strategies {', '.join(strategies)}, "
              f"seeds {', '.join(map(str, seeds))}\n   runs → {parent}\n   results → {dest}\n   scale: "
              + " ".join(scale), flush=True)
        cost = POWERED_COST if powered and not args.smoke else COST
        check(args.config, strategies, overrides, len(seeds), cost)  # bad input fails here, not hours in
        first = POWERED_FIRST if powered else []
        if args.dry_run:
            pending = [f"{s} seed {seed}" for seed, s in schedule(strategies, seeds, first)
                       if not stored_finished(dest, args.config, overrides, s, seed)]
            print(f"   to run, in this order ({len(pending)}): " + ", ".join(pending), flush=True)
            continue
        run_stored(args.config, overrides, strategies, seeds, parent, dest, info, commit, args.quiet,
                   report_order=STRATEGIES.get(order, []), first=first)
        print_comparison(dest, Console(width=max(100, 24 + 16 * len(strategies))))
        print(f"Results stored in {dest}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(exit_code(benchmark))
