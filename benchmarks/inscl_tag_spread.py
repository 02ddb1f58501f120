"""How much InsInfo can tell SuperNI instructions apart: the spread of tag counts and of InsInfo over the
task definitions of ../shared/data/superni, for the keyphrase tagger as configured (or with overrides).

    python benchmarks/inscl_tag_spread.py [--set replay.inscl.keyphrase_threshold=0.0 ...] [--out inscl_tag_spread]

InsInfo(ins) = sum over its tags of ln(N / f_t) (METHODS.md §3.5), computed over the pool of every
definition. A tagger that returns the same number of tags for every instruction leaves InsInfo's
complexity term constant (issue 21, defect 1). Writes results/<out>.json with the histogram of tag
counts, InsInfo's quantiles and the share of instructions at the pool's maximum.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections import Counter
from pathlib import Path

from _common import SUPERNI, machine, write_result


def definitions(root: Path) -> list[str]:
    out = []
    for path in sorted((root / "tasks").glob("*.json")):
        out.append(json.loads(path.read_text())["Definition"][0])
    return list(dict.fromkeys(out))


def spread(overrides: list[str], root: Path) -> dict:
    from citune.config import load_config
    from citune.replay.inscl.insinfo import insinfo_scores
    from citune.replay.inscl.tagging import instruction_tags

    cfg = load_config(None, overrides)
    pool = definitions(root)
    with tempfile.TemporaryDirectory() as cache:  # never a stale cache: the tags are computed here
        tags = instruction_tags(pool, cfg.replay.inscl, Path(cache))
    scores = insinfo_scores(tags)
    counts = [len(tags[i]) for i in pool]
    values = sorted(scores[i] for i in pool)
    top = max(values)
    q = statistics.quantiles(values, n=10)
    return {"overrides": overrides, "instructions": len(pool),
            "tag_counts": dict(sorted(Counter(counts).items())),
            "tag_count_mean": round(statistics.mean(counts), 3), "tag_count_stdev": round(statistics.pstdev(counts), 3),
            "insinfo_min": round(values[0], 3), "insinfo_deciles": [round(v, 3) for v in q],
            "insinfo_max": round(top, 3), "insinfo_stdev": round(statistics.pstdev(values), 3),
            "share_at_max": round(sum(v >= top - 1e-9 for v in values) / len(values), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", action="append", default=[], help="a config override (repeatable)")
    ap.add_argument("--superni", type=Path, default=SUPERNI)
    ap.add_argument("--out", default="inscl_tag_spread")
    args = ap.parse_args()
    result = spread(args.set, args.superni)
    print(json.dumps(result, indent=2))
    print(write_result(args.out, {"machine": machine(0), **result}))


if __name__ == "__main__":
    main()
