"""Single-task experts for the Relative Gain upper bound (`eval.ub: expert`).

UB_j is the score on task j of the base model fine-tuned on task j alone, with the run's
training settings. Experts are cached by a hash of everything that determines their score.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from accelerate import Accelerator

from citune.config import Config
from citune.types import Task
from citune.types import TrainExample, per_reference
from citune.engine.trainer import prepare_for_training, release, train_stage
from citune.evaluation.evaluate import evaluate_task
from citune.evaluation.metrics import primary_score
from citune.evaluation.vscore import build_checker
from citune.io import read_json, write_json
from citune.models import load_model


def expert_key(cfg: Config, task: Task) -> str:
    parts = {"model": cfg.model.model_dump(mode="json"), "train": cfg.train.model_dump(mode="json"),
             "eval": cfg.eval.model_dump(mode="json"), "seed": cfg.seed, "scorer": task.scorer,
             "train_uids": [x.uid for x in task.train], "test_uids": [x.uid for x in task.test]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def expert_score(cfg: Config, task: Task, cache: Path, accelerator: Accelerator) -> float:
    """The primary score of a single-task expert on `task` (trained once, then read from the cache)."""
    path = cache / "experts" / f"{task.name}-{expert_key(cfg, task)}.json"
    if path.is_file():
        return primary_score(read_json(path))
    bundle = load_model(cfg.model, cache, seed=cfg.seed)
    model = prepare_for_training(accelerator, bundle.model, cfg.train)
    train_stage(accelerator, bundle, per_reference([TrainExample(x) for x in task.train], cfg.train.references),
                cfg.train, cfg.seed * 1000 + 999,
                label=f"expert {task.name}", model=model)
    summary, _ = evaluate_task(bundle, task, cfg, build_checker(task))
    release(accelerator, model)  # an expert is scored once; the run's own model stays prepared
    if accelerator.is_main_process:
        write_json(path, {"task": task.name, "scorer": summary["scorer"], "score": summary["score"], "n": summary["n"]})
    return summary["score"]


def expert_upper_bounds(cfg: Config, tasks: list[Task], cache: Path, accelerator: Accelerator) -> list[float]:
    return [expert_score(cfg, t, cache, accelerator) for t in tasks]
