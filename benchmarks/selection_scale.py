"""Selection at scale.

1. InsCL's task distance on a task of 100,000 unique instructions (synthetic unit embeddings,
   384-d like all-MiniLM-L6-v2, clustered, with uneven instance counts): the support is compressed
   by weighted k-means to `inscl.max_support` atoms (METHODS.md §3.2, `replay.wasserstein.compress`)
   and W1 is solved exactly (`w1`, POT's network simplex) against (a) a SuperNI-sized task of 8
   instructions and (b) a second 100,000-instruction task. Timed end to end (compression included,
   embedding computation excluded: the vectors are given).

       python benchmarks/selection_scale.py distance [--n 100000] [--max-support 512]

2. The share of stage time spent selecting replay (`selection_seconds` / stage `seconds`, both
   recorded by the runner in manifest.json) of finished runs, given as run directories or as stored
   run archives (`benchmarks/results/superni/<dir>/<run>.run.json.gz`):

       python benchmarks/selection_scale.py share RUN [RUN ...]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, write_result  # noqa: E402


def synthetic_task(n: int, dim: int, clusters: int, seed: int):
    """n distinct unit vectors around `clusters` directions, and Zipf-like instance counts."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    assign = rng.integers(0, clusters, size=n)
    points = centres[assign] + 0.6 * rng.normal(size=(n, dim)).astype(np.float32)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    counts = rng.zipf(1.8, size=n).clip(max=1000).astype(np.float64)
    return points, counts


def distance(args) -> dict:
    import numpy as np

    from citune.engine.trainer import configure_threads
    from citune.replay.inscl.wasserstein import compress, marginal, w1

    threads = configure_threads(args.threads, 1)
    big_a = synthetic_task(args.n, args.dim, 64, 1)
    big_b = synthetic_task(args.n, args.dim, 64, 2)
    small = synthetic_task(8, args.dim, 4, 3)
    timings = {}

    t0 = time.perf_counter()
    sa = compress(big_a[0], marginal(big_a[1]), args.max_support, seed=11)
    timings["compress_100k"] = time.perf_counter() - t0
    ss = compress(small[0], marginal(small[1]), args.max_support, seed=12)
    t1 = time.perf_counter()
    d_small = w1(sa, ss)
    timings["w1_vs_8"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    sb = compress(big_b[0], marginal(big_b[1]), args.max_support, seed=13)
    timings["compress_second_100k"] = time.perf_counter() - t2
    t3 = time.perf_counter()
    d_big = w1(sa, sb)
    timings["w1_100k_vs_100k"] = time.perf_counter() - t3
    total_one = timings["compress_100k"] + timings["w1_vs_8"]
    total_two = total_one + timings["compress_second_100k"] + timings["w1_100k_vs_100k"]

    # How much the compression moves the distance: W1 of the compressed support against the
    # uncompressed one on a subsample small enough for the exact solver (5,000 points).
    rng = np.random.default_rng(0)
    idx = rng.choice(args.n, size=5000, replace=False)
    from citune.replay.inscl.wasserstein import Support

    sub = Support(big_a[0][idx], marginal(big_a[1][idx]))
    sub_c = compress(sub.points, sub.mass, args.max_support, seed=14)
    ref = w1(sub, ss)
    approx = w1(sub_c, ss)
    result = {
        "machine": machine(threads),
        "n_instructions": args.n, "dim": args.dim, "max_support": args.max_support,
        "atoms_after_compression": [len(sa), len(sb)],
        "seconds": {k: round(v, 2) for k, v in timings.items()},
        "seconds_one_100k_task_vs_small": round(total_one, 2),
        "seconds_two_100k_tasks": round(total_two, 2),
        "w1": {"100k_vs_8": round(d_small, 5), "100k_vs_100k": round(d_big, 5)},
        "compression_error_on_5000_point_subsample": {"exact": round(ref, 5), "compressed": round(approx, 5),
                                                       "abs_diff": round(abs(ref - approx), 5)},
        "goal": "< 60 s for a task of 100,000 unique instructions",
    }
    print(json.dumps(result["seconds"]), f"one task {total_one:.1f} s, two {total_two:.1f} s")
    return result


def share(args) -> dict:
    from citune.runs.archive import is_archive, read_archive

    runs = []
    for d in args.runs:
        if is_archive(d):
            files = read_archive(d)
            if "manifest.json" not in files or "config.yaml" not in files:
                sys.exit(f"{d}: the archive holds no manifest.json or config.yaml")
        else:
            files = {name: (Path(d) / name).read_text() for name in ("manifest.json", "config.yaml")}
        manifest = json.loads(files["manifest.json"])
        stages = [s for s in manifest["stages"] if s.get("index", 0) > 0 and s.get("status") == "done"]
        rows = [{"stage": s["index"], "task": s["task"], "selection_seconds": s.get("selection_seconds", 0.0),
                 "train_seconds": s.get("train_seconds"), "stage_seconds": s.get("seconds"),
                 "peak_rss_mb": s.get("peak_rss_mb"),
                 "share": round(s.get("selection_seconds", 0.0) / s["seconds"], 4) if s.get("seconds") else None}
                for s in stages]
        sel = sum(r["selection_seconds"] for r in rows)
        total = sum(r["stage_seconds"] or 0 for r in rows)
        import yaml

        cfg = yaml.safe_load(files["config.yaml"])
        setup = {"model": cfg["model"]["name"], "finetune": cfg["model"]["finetune"], "data": cfg["data"]["kind"],
                 "superni": cfg["data"]["superni"] if cfg["data"]["kind"] == "superni" else None,
                 "max_train_per_task": cfg["data"]["max_train_per_task"], "train": cfg["train"],
                 "eval": cfg["eval"], "replay_per_task": cfg["replay"]["per_task"],
                 "kpig": cfg["replay"]["kpig"] if manifest.get("strategy") == "kpig" else None}
        runs.append({"run": str(d), "strategy": manifest.get("strategy"), "setup": setup, "stages": rows,
                     "selection_seconds": round(sel, 2), "stage_seconds": round(total, 2),
                     "share": round(sel / total, 4) if total else None,
                     "max_stage_share": max((r["share"] or 0 for r in rows), default=None)})
        print(f"{d}: {manifest.get('strategy')}: selection {sel:.1f} s of {total:.1f} s "
              f"({100 * sel / total if total else 0:.1f} %)")
    return {"runs": runs, "goal": "selection under 5 % of stage time"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="part", required=True)
    d = sub.add_parser("distance")
    d.add_argument("--n", type=int, default=100_000)
    d.add_argument("--dim", type=int, default=384)
    d.add_argument("--max-support", type=int, default=512)
    d.add_argument("--threads", type=int, default=None)
    d.add_argument("--out", default="selection_scale")
    s = sub.add_parser("share")
    s.add_argument("runs", nargs="+", help="run directories or run archives (*.run.json.gz)")
    s.add_argument("--out", default="selection_share")
    args = ap.parse_args()
    result = distance(args) if args.part == "distance" else share(args)
    print("wrote", write_result(args.out, result))


if __name__ == "__main__":
    main()
