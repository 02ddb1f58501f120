"""Read a run directory (ARCHITECTURE.md §2; its layout: runs/rundir.py) into one object, tolerating
partial runs.

Every file is optional: a run killed after two stages, or one whose metrics.json
was never written, still loads. Metrics come from metrics.json when present,
otherwise they are recomputed from the stages' eval.json files. `instance_scores` reads
the per-instance rows of the eval.json files, which the comparison's intervals resample.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from citune.evaluation.metrics import metrics_from_evals, primary_scorer
from citune.evaluation.uncertainty import RunScores
from citune.io import read_json, read_jsonl
from citune.runs.rundir import RunDir, parse_run_dir_name


@dataclass
class RunData:
    path: Path
    config: dict = field(default_factory=dict)
    config_sha256: str | None = None
    manifest: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    evals: dict[int, dict] = field(default_factory=dict)  # stage index (0 = base) -> eval.json
    replay: dict[int, Counter] = field(default_factory=dict)  # stage index -> replayed count by source task
    artifacts: dict[str, Any] = field(default_factory=dict)  # a strategy's run-level files, by name

    @property
    def inscl(self) -> dict | None:
        """InsCL's K × K task distance table, when an InsCL strategy wrote it."""
        return self.artifacts.get("inscl_distances")

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def strategy(self) -> str:
        return (self.manifest.get("strategy") or _get(self.config, "replay", "strategy")
                or parse_run_dir_name(self.name)[0] or "?")

    @property
    def seed(self) -> Any:
        seed = self.manifest.get("seed", self.config.get("seed"))
        return seed if seed is not None else parse_run_dir_name(self.name)[1]

    @property
    def model(self) -> Any:
        return self.manifest.get("model") or _get(self.config, "model", "name")

    @property
    def tasks(self) -> list[str]:
        return list(self.metrics.get("tasks") or [s["task"] for s in self.stages])

    @property
    def heldout(self) -> list[str]:
        return list(self.metrics.get("heldout") or [])

    @property
    def stages(self) -> list[dict]:
        """Manifest entries of the stream's stages (the base evaluation, index 0, left out)."""
        return [s for s in self.manifest.get("stages", []) if s.get("index", 1) != 0]

    @property
    def all_stages(self) -> list[dict]:
        return list(self.manifest.get("stages", []))

    @property
    def n_done(self) -> int:
        return sum(s.get("status") == "done" for s in self.stages)

    @property
    def complete(self) -> bool:
        entries = self.all_stages
        return bool(entries) and all(s.get("status") == "done" for s in entries)

    @property
    def train_tokens(self) -> int | None:
        tokens = [s["train_tokens"] for s in self.stages if s.get("train_tokens") is not None]
        return sum(tokens) if tokens else None

    @property
    def wall_seconds(self) -> float | None:
        """Sum of the recorded stage times (training, replay selection and evaluation), base included."""
        secs = [s["seconds"] for s in self.all_stages if s.get("seconds") is not None]
        return float(sum(secs)) if secs else None


def _get(d: dict, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _read_optional(path: Path, reader) -> Any:
    if not path.is_file():
        return None
    try:
        return reader(path)
    except (OSError, ValueError, yaml.YAMLError):
        return None  # unreadable: shown as missing, a report never crashes on one bad file


def load_run(run_dir: str | Path) -> RunData:
    layout = RunDir(run_dir)
    run = RunData(path=layout.path)
    cfg_path = layout.config_path
    if cfg_path.is_file():
        raw = cfg_path.read_bytes()
        run.config_sha256 = hashlib.sha256(raw).hexdigest()
        run.config = _read_optional(cfg_path, lambda p: yaml.safe_load(p.read_text(encoding="utf-8"))) or {}
    run.manifest = _read_optional(layout.manifest_path, read_json) or {}
    for index, task in layout.stages_present().items():
        ev = _read_optional(layout.eval_path(index, task), read_json)
        if ev is not None:
            run.evals[index] = ev
        rows = _read_optional(layout.replay_path(index, task), read_jsonl)
        if rows is not None:
            run.replay[index] = Counter(str(r.get("task", "?")) for r in rows)
    for name in layout.artifact_names():
        run.artifacts[name] = _read_optional(layout.artifact_path(name), read_json)
    # metrics.json as the run wrote it, and from its eval.json files whatever it lacks (a partial run; a
    # metric added since the run, such as RG's second upper bound)
    run.metrics = {**_metrics_from_evals(run), **(_read_optional(layout.metrics_path, read_json) or {})}
    return run


def _metrics_from_evals(run: RunData) -> dict:
    """The metrics of a run without metrics.json, from whatever eval.json files exist."""
    tasks = [s["task"] for s in run.stages] or [ev.get("task") for i, ev in sorted(run.evals.items()) if i > 0]
    if not tasks:
        return {}
    heldout = list(dict.fromkeys(h for ev in run.evals.values() for h in ev.get("heldout", {})))
    try:
        return metrics_from_evals(tasks, heldout, run.evals, run.manifest.get("expert_ub"))
    except (ValueError, TypeError):
        return {"tasks": tasks, "heldout": heldout}


def final_stage(run: RunData) -> int | None:
    """The last stage with an eval.json (0 = only the base model was evaluated)."""
    return max(run.evals) if run.evals else None


def instance_scores(run: RunData) -> RunScores | None:
    """The per-instance primary scores and constraint checks of every task (stream, then held-out) at
    every stage 0..K, aligned by uid (see `RunScores`). None when an evaluated task has no
    per-instance rows, or not one per test instance, or rows without its scorer's key (an old or
    partial eval.json): the run then has no intervals. ValueError when one task's test instances
    differ between stages."""
    tasks, heldout = run.tasks, run.heldout
    if not tasks or not run.evals:
        return None
    uids, scores, v_ok = {}, {}, {}
    for name in [*tasks, *heldout]:
        by_stage = {}
        for i, ev in run.evals.items():
            summary = (ev.get("tasks") or {}).get(name) or (ev.get("heldout") or {}).get(name)
            if summary is None or i > len(tasks):
                continue
            rows, key = (ev.get("predictions") or {}).get(name), primary_scorer(summary)
            if not rows or len(rows) != summary.get("n", len(rows)) or any(r.get(key) is None for r in rows):
                return None
            by_stage[i] = {r["uid"]: (float(r[key]), r.get("v_ok")) for r in rows}
            if len(by_stage[i]) != len(rows):
                return None  # repeated uids: the instances cannot be aligned
        if not by_stage:
            return None
        order = list(next(iter(by_stage.values())))
        for i, found in by_stage.items():
            if set(found) != set(order) or len(found) != len(order):
                raise ValueError(f"{run.path}: task {name!r} has other test instances at stage {i}")
        uids[name] = order
        scores[name] = np.full((len(tasks) + 1, len(order)), np.nan)
        v_ok[name] = np.full((len(tasks) + 1, len(order)), np.nan)
        for i, found in by_stage.items():
            scores[name][i] = [found[u][0] for u in order]
            v_ok[name][i] = [np.nan if found[u][1] is None else float(found[u][1]) for u in order]
    return RunScores(run.name, list(tasks), list(heldout), uids, scores, v_ok, run.manifest.get("expert_ub"))
