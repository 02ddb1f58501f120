"""Quality of the replay strategies on TRACE's five short tasks (issue 21): `citune compare` on
examples/trace-short.yaml (C-STANCE, FOMC, ScienceQA, NumGLUE-cm, NumGLUE-ds in TRACE's order, from
../shared/data/trace500 as its authors ship it, each scored by TRACE's rule), the embedded
SmolLM2-135M-Instruct + LoRA, ten methods, five seeds.

    python benchmarks/trace_quality.py --dry-run        # stream sizes, scale, projected time; no training
    python benchmarks/trace_quality.py                  # the whole benchmark: hours, resumable
    python benchmarks/trace_quality.py --strategies none,random --seeds 1
    python benchmarks/trace_quality.py --smoke          # tiny random model, tiny caps: the pipeline in a minute

Every test instance of the release is evaluated (100 per task, 81 for NumGLUE-cm: TRACE scores whole
test files), after every stage, on the tasks seen so far; each task trains on 64 instances (a seeded
sample of its train.json, without the release's train/test duplicates) and each replay strategy
replays 8 per earlier task (1/8, as in the SuperNI benchmark). Runs are stored as they finish, one
archive each, under benchmarks/results/trace/short5[-smoke]/ with the comparison rebuilt over every
stored run (_stored.py); running the command again resumes. `python benchmarks/power.py --pilot
benchmarks/results/trace/short5` estimates the design's interval from the stored seeds.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT  # noqa: E402  (sets OMP_WAIT_POLICY before torch loads)
from _stored import exit_code, git_commit, run_stored  # noqa: E402

CONFIG = ROOT / "examples" / "trace-short.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "trace"
TRACE500 = ROOT.parent / "shared" / "data" / "trace500"

STRATEGIES = ["none", "random", "inscl", "kpig", "multitask", "inscl-dynamic", "inscl-insinfo", "ewc", "lwf", "olora"]
SEEDS = "1,2,3,4,5"

# Estimated from the SuperNI powered runs on this machine kind (2 cores, idle; `random` seed 1, stages
# 4-8, packed prefill): 0.92 s per training example pass and 12.6 s per category of 32 prompts, i.e.
# 0.4 s per prompt (greedy, 16 new tokens, batches of 32); TRACE's prompts are about as long (C-STANCE
# longer), its examples longer (ScienceQA), so a pass is taken at 1.0 s. Replace with TRACE's own stage
# times once a run is stored.
COST = {"pass": 1.0, "prompt": 0.4, "run_overhead": 30.0}

# On top of the preset: each stage evaluates the tasks seen so far (TRACE reports overall performance
# and BWT, not FWT); evaluating every task after every stage would cost half as much again.
SCALE = ["eval.eval_unseen=false"]

# --smoke: the pipeline end to end in a minute, nothing measured.
SMOKE = ["model.name=tiny", "model.finetune=full", "train.lr=0.003", "train.max_length=128",
         "data.max_train_per_task=6", "eval.max_test_per_task=4", "eval.max_prompt_length=96",
         "eval.max_new_tokens=4", "replay.per_task=2"]


def projected_seconds(stream, cfg, strategy: str) -> float:
    """A run's wall time under COST: its training passes (with replay), then the evaluation of every
    stage (the base model on every task, stage t on the t tasks seen so far)."""
    cap = cfg.eval.max_test_per_task or 10 ** 9
    tests = [min(cap, len(t.test)) for t in stream.tasks]
    passes = 0
    for t, task in enumerate(stream.tasks):
        previous = stream.tasks[:t]
        replay = (0 if strategy == "none" else sum(len(p.train) for p in previous) if strategy == "multitask"
                  else sum(min(cfg.replay.per_task, len(p.train)) for p in previous))
        passes += cfg.train.epochs * (len(task.train) + replay)
    prompts = sum(tests) + sum(sum(tests if cfg.eval.eval_unseen else tests[: t + 1]) for t in range(len(tests)))
    factor = 2.0 if strategy == "kpig" else 1.0  # KPIG's objective adds a pass of the masked instruction
    return COST["run_overhead"] + passes * COST["pass"] * factor + prompts * COST["prompt"]


def check(config: Path, strategies: list[str], overrides: list[str], seeds: int) -> None:
    """Validate the config, the strategies and the stream before anything runs; print the stream's
    sizes and each run's projected time."""
    from citune.config import load_config
    from citune.data import build_stream
    from citune.replay import get_strategy

    cfg = load_config(config, overrides)
    for s in strategies:
        get_strategy(s, cfg)
    stream = build_stream(cfg)
    cap = cfg.eval.max_test_per_task or 10 ** 9
    print("   stream (train/evaluated test, scorer): " + ", ".join(
        f"{t.name} {len(t.train)}/{min(cap, len(t.test))} {t.scorer}" for t in stream.tasks), flush=True)
    if cfg.model.name == "tiny":
        return
    minutes = {s: projected_seconds(stream, cfg, s) / 60 for s in strategies}
    print("   projected minutes per run on an idle machine (COST): "
          + ", ".join(f"{s} {m:.0f}" for s, m in minutes.items())
          + f"; all {seeds} seed(s): {sum(minutes.values()) * seeds / 60:.1f} h", flush=True)


def benchmark(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overrides", nargs="*", help="extra dotted config overrides (key=value), applied last")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--seeds", default=SEEDS)
    ap.add_argument("--trace-root", default=None, help="the TRACE-500 folder (default ../shared/data/trace500)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "runs" / "trace",
                    help="parent of the big run directories (not committed)")
    ap.add_argument("--results", type=Path, default=None, help=f"where results are stored (default {RESULTS})")
    ap.add_argument("--smoke", action="store_true", help="tiny random model and tiny caps: the pipeline only")
    ap.add_argument("--dry-run", action="store_true", help="print what would run and the scale; no training")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.quiet:
        os.environ["CITUNE_QUIET"] = "1"
    root = Path(args.trace_root) if args.trace_root else TRACE500
    if not (root / "FOMC").is_dir():
        print(f"error: {root}: TRACE-500 not found; pass --trace-root DIR", file=sys.stderr)
        return 2
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    scale = [*SCALE, *SMOKE] if args.smoke else SCALE
    overrides = [f"data.benchmark.root={root.resolve()}", *scale, *args.overrides]
    name = "short5-smoke" if args.smoke else "short5"
    results = args.results or (args.out / "smoke-results" if args.smoke else RESULTS)
    parent, dest = args.out / name, results / name
    print(f"== TRACE short tasks: strategies {', '.join(strategies)}, seeds {', '.join(map(str, seeds))}\n"
          f"   runs → {parent}\n   results → {dest}\n   config: {CONFIG.relative_to(ROOT)} "
          + " ".join(overrides[1:]), flush=True)
    check(CONFIG, strategies, overrides, len(seeds))  # bad input fails here, not hours in
    if args.dry_run:
        return 0
    info = {"benchmark": "TRACE short tasks", "config": str(CONFIG.relative_to(ROOT)), "strategies": strategies,
            "seeds": seeds, "scale": scale, "overrides": args.overrides, "smoke": args.smoke, "run_parent": str(parent)}
    run_stored(CONFIG, overrides, strategies, seeds, parent, dest, info, git_commit(), args.quiet)
    from rich.console import Console

    from citune.compare import print_comparison

    print_comparison(dest, Console(width=max(100, 24 + 16 * len(strategies))))
    print(f"Results stored in {dest}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(exit_code(benchmark))
