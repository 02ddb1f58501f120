"""`citune score RUN_DIR`: every stored prediction scored again with today's scorers, so that a scorer
fix reaches old runs without retraining. The eval.json files and metrics.json are rewritten (all of
them computed first, then written, each atomically); the CLI then rebuilds the report."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from citune.errors import InputError
from citune.evaluation.evaluate import score_names, score_rows, summarize_rows
from citune.evaluation.metrics import metrics_from_evals, primary_score, primary_scorer
from citune.io import read_json, write_json
from citune.runs.rundir import RunDir

KEPT = ("truncated", "hit_max_new_tokens")  # facts of the generation, not of the scorer


@dataclass
class Rescored:
    files: int  # eval.json files rescored
    predictions: int
    changed: int  # predictions whose primary score changed
    metrics: dict


def _extra_scorers(run: RunDir) -> list[str]:
    """The run's `eval.scorers` (scores computed for every task besides the primary one)."""
    try:
        cfg = run.stored_config() or {}
    except (OSError, yaml.YAMLError):
        return []
    return list((cfg.get("eval") or {}).get("scorers") or [])


def _rescore_eval(ev: dict, extra: list[str], where: str) -> tuple[int, int]:
    """Rescore one eval.json content in place; (predictions, changed)."""
    n = changed = 0
    for group in ("tasks", "heldout"):
        for name, summary in (ev.get(group) or {}).items():
            rows = (ev.get("predictions") or {}).get(name)
            if rows is None:
                raise InputError(f"task '{name}' has no stored predictions to rescore", where)
            scorer = primary_scorer(summary)
            names = score_names(scorer, extra)
            before = [r.get(scorer) for r in rows]
            score_rows(rows, names)
            n += len(rows)
            changed += sum(b != r[scorer] for b, r in zip(before, rows))
            new = summarize_rows(rows, scorer, names)
            new.update({k: summary[k] for k in KEPT if k in summary})
            ev[group][name] = new
    held = [primary_score(s) for s in (ev.get("heldout") or {}).values()]
    ev["p_score"] = sum(held) / len(held) if held else None
    return n, changed


def rescore_run(run_dir: Path) -> Rescored:
    run = RunDir(run_dir)
    if not run.manifest_path.is_file():
        raise InputError("not a run directory (no manifest.json)", str(run_dir))
    manifest = run.manifest()
    stages = manifest.get("stages") or []
    extra = _extra_scorers(run)
    evals, n, changed = {}, 0, 0
    for entry in stages:
        path = run.eval_path(entry["index"], entry["task"])
        if not path.is_file():
            continue
        try:
            ev = read_json(path)
        except ValueError as e:
            raise InputError(f"not valid JSON ({e})", str(path)) from None
        k, c = _rescore_eval(ev, extra, str(path))
        evals[entry["index"]] = ev
        n, changed = n + k, changed + c
    if not evals:
        raise InputError("the run has no eval.json to rescore", str(run_dir))
    tasks = [s["task"] for s in stages if s["index"] > 0]
    heldout = list(dict.fromkeys(h for ev in evals.values() for h in ev.get("heldout") or {}))
    metrics = metrics_from_evals(tasks, heldout, evals, manifest.get("expert_ub"))
    for entry in stages:
        if entry["index"] in evals:
            write_json(run.eval_path(entry["index"], entry["task"]), evals[entry["index"]])
    run.write_metrics(metrics)
    return Rescored(len(evals), n, changed, metrics)
