"""What each of the field's baselines costs on one SuperNI stage, measured side by side against `none`.

    python benchmarks/method_cost.py [--methods none,random,ewc,lwf,agem,olora,inclora,ssr] [--train 64]
        [--order none,ewc,...] [--out method_cost]

Each method runs `citune run` in a process of its own (so that peak memory is its own) on a two-stage
SuperNI stream (the first two categories of the curriculum order, `--train` training and 8 test
instances each, SmolLM2-135M-Instruct + LoRA r=16, 1 epoch, batch 8, replay budget 16): stage 1 is the
same for every method but EWC (its Fisher is computed after it), stage 2 is where the methods act. From
each run's manifest: stage 2's training time, its method time (replay selection, SSR's synthesis, LwF's
teacher pass, EWC's Fisher after stage 1), its wall time and the process's peak resident memory, each
as a ratio to `none` measured in the same invocation. Writes results/<out>.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from _common import ROOT, SUPERNI, machine, write_result

CONFIG = ROOT / "examples" / "superni16.yaml"


def overrides(method: str, train: int, cache: Path) -> list[str]:
    return [f"replay.strategy={method}", "data.superni.categories=[Classification,Text_Quality_Evaluation]",
            "data.superni.heldout_categories=[]", f"data.max_train_per_task={train}", "data.test_size=8",
            "data.superni.per_source_cap=32", "replay.per_task=16", "eval.eval_unseen=false", "run.quiet=true",
            f"data.superni.root={SUPERNI}", f"run.cache_dir={cache}"]


def run_one(method: str, train: int, work: Path) -> dict:
    out = work / method
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "citune", "run", str(CONFIG), "-o", str(out),
                           *overrides(method, train, work / "cache")], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{method}: {proc.stderr[-2000:]}")
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    one, two = stages[1], stages[2]
    method_s = (two.get("selection_seconds", 0) + two.get("method_seconds", 0)
                + (one.get("selection_seconds", 0) if "ewc" in method else 0))
    return {"method": method, "wall_seconds": round(time.perf_counter() - started, 1),
            "stage2_seconds": two["seconds"], "stage2_train_seconds": two["train_seconds"],
            "stage2_method_seconds": round(method_s, 3), "stage2_train_examples": two["train_examples"],
            "peak_rss_mb": max(s.get("peak_rss_mb", 0) for s in stages),
            "facts": {**{k: two[k] for k in ("projections", "ssr_synthetic", "ssr_demo_fill") if k in two},
                      **{k: one[k] for k in ("ewc_fisher_sum", "ewc_fisher_params") if k in one}},
            "stage2_log": read_log(out, two)}


def read_log(out: Path, entry: dict) -> dict:
    """Stage 2's mean training loss and, where logged, the mean of each method term (ewc, lwf_kl, ...)."""
    rows = [json.loads(x) for x in (out / "stages" / f"{entry['index']:02d}-{entry['task']}" / "train_log.jsonl")
            .read_text().splitlines()]
    keys = [k for k in rows[0] if k in ("loss", "ce", "ewc", "lwf_kl", "orthogonality")]
    return {k: round(sum(r[k] for r in rows) / len(rows), 5) for k in keys}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="none,random,ewc,lwf,agem,olora,inclora,ssr")
    ap.add_argument("--train", type=int, default=64)
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "runs" / "method_cost")
    ap.add_argument("--out", default="method_cost")
    args = ap.parse_args()
    methods = args.methods.split(",")
    if "none" not in methods:
        raise SystemExit("--methods must include none (the reference)")
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for m in methods:
        if (args.work / m).exists():
            raise SystemExit(f"{args.work / m} exists: remove it or choose another --work")
        rows.append(run_one(m, args.train, args.work))
        print(json.dumps(rows[-1]), flush=True)
    ref = next(r for r in rows if r["method"] == "none")
    for r in rows:
        r["ratio_stage2_seconds"] = round(r["stage2_seconds"] / ref["stage2_seconds"], 2)
        r["ratio_peak_rss"] = round(r["peak_rss_mb"] / ref["peak_rss_mb"], 2)
    import torch

    result = {"machine": machine(torch.get_num_threads()), "train_per_task": args.train, "rows": rows}
    print(write_result(args.out, result))


if __name__ == "__main__":
    main()
