"""How far InsCL's replay quotas are from an equal split (random replay's), on the SuperNI-16 stream,
at several replay budgets: the plan only (`citune plan`: instruction embeddings, Wasserstein
distances and quotas; no training, about half a minute a setting with warm caches).

    python benchmarks/inscl_quota_spread.py

Settings: the quality benchmark's scale (first 8 curriculum categories, 16 training instances per
category) with 2 and 8 replayed per previous category, and the InsCL paper's budget (200 per
previous category, all 16 categories, up to 100 instances read per SuperNI task). Per setting: the
range of the pairwise category distances, the quotas of the last stage, and the mean over stages of
the total-variation distance between InsCL's quota shares and the equal split (0: the same quotas).
Writes benchmarks/results/inscl_quota_spread.json.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, machine, write_result  # noqa: E402

CONFIG = ROOT / "examples" / "superni16.yaml"
BENCHMARK_SCALE = ["data.superni.per_source_cap=8", "data.max_train_per_task=16", "data.test_size=3",
                   "data.superni.heldout_categories=[Textual Entailment,Title Generation]",
                   "data.superni.categories=[Classification,Text_Quality_Evaluation,Code,Detection,"
                   "Sentiment_Analysis,Comprehension,Closed_QA,Extraction]"]
SETTINGS = {
    "benchmark scale, 2 per category": [*BENCHMARK_SCALE, "replay.per_task=2"],
    "benchmark scale, 8 per category": [*BENCHMARK_SCALE, "replay.per_task=8"],
    "paper budget, 200 per category, 16 categories": ["data.superni.per_source_cap=100",
                                                      "data.max_train_per_task=1000", "replay.per_task=200"],
}


def spread(plans: list[dict]) -> dict:
    """Quota shares against the equal split (capped by what each category stores), per stage."""
    tv = []
    for stage in plans:
        prev = stage.get("previous") or []
        if len(prev) < 2 or not stage["budget"]:
            continue
        quotas = [p["quota"] for p in prev]
        equal = [min(stage["budget"] / len(prev), p["stored"]) for p in prev]
        tv.append(0.5 * sum(abs(q / sum(quotas) - e / sum(equal)) for q, e in zip(quotas, equal)))
    last = plans[-1]["previous"]
    distances = [p["distance"] for p in last]
    return {"mean_tv_to_equal_split": sum(tv) / len(tv), "max_tv_to_equal_split": max(tv),
            "last_stage_quotas": {p["task"]: p["quota"] for p in last},
            "last_stage_distance_range": [min(distances), max(distances)]}


def main() -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from citune.config import load_config
    from citune.data import build_stream
    from citune.paths import cache_root
    from citune.replay.planning import plan_stream

    results = {}
    for name, overrides in SETTINGS.items():
        cfg = load_config(CONFIG, ["replay.strategy=inscl", *overrides])
        started = time.perf_counter()
        plans = plan_stream(cfg, build_stream(cfg), cache_root(cfg.run.cache_dir))
        results[name] = {"overrides": overrides, "seconds": round(time.perf_counter() - started, 1), **spread(plans)}
        r = results[name]
        print(f"{name}: distances {r['last_stage_distance_range'][0]:.3f}-{r['last_stage_distance_range'][1]:.3f}, "
              f"last-stage quotas {min(r['last_stage_quotas'].values())}-{max(r['last_stage_quotas'].values())}, "
              f"TV to the equal split {r['mean_tv_to_equal_split']:.3f} (max {r['max_tv_to_equal_split']:.3f})",
              flush=True)
    write_result("inscl_quota_spread", {"machine": machine(threads=2), "settings": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
