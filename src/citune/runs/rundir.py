"""The run directory contract (ARCHITECTURE.md §2): the one module that knows its layout, for writing
(the stage loop, rescoring) and for reading (runs/rundata.py, the comparison).

```
RUN_DIR/config.yaml  manifest.json  metrics.json  <artifact>.json (a strategy's, e.g. inscl_distances)
        stages/NN-<task>/{eval.json, replay.jsonl, train_log.jsonl}
        checkpoints/stage-NN.safetensors
```
A stage is recorded by one call (`record_stage`): its files first, each atomically, then the manifest
entry marked done, so that a stage is done exactly when all of its files are there.
"""
from __future__ import annotations

import hashlib
import json
import platform
import re
import time
from pathlib import Path
from typing import Any

import yaml

from citune.config import Config, config_difference
from citune.errors import InputError
from citune.io import atomic_write_bytes, make_dir, read_json, write_json, write_jsonl, write_yaml

_STAGE_DIR = re.compile(r"^(\d+)-(.+)$")
_COMPARE_RUN = re.compile(r"^(.+)-seed(\d+)$")


def config_hash(cfg_dict: dict) -> str:
    return hashlib.sha256(json.dumps(cfg_dict, sort_keys=True).encode()).hexdigest()[:16]


def content_hash(rows) -> str:
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps(r, sort_keys=True, ensure_ascii=False).encode())
    return h.hexdigest()[:16]


def library_versions() -> dict:
    import importlib.metadata as md

    names = ["citune", "torch", "transformers", "peft", "accelerate", "pot"]
    out = {"python": platform.python_version()}
    for n in names:
        try:
            out[n] = md.version(n)
        except md.PackageNotFoundError:
            pass
    return out


def run_dir_name(strategy: str, seed: int) -> str:
    """`<strategy>-seed<seed>`, a run's folder in a `citune compare` parent."""
    return f"{strategy}-seed{seed}"


def parse_run_dir_name(name: str) -> tuple[str | None, int | None]:
    """(strategy, seed) of a `run_dir_name`; (None, None) for any other name."""
    m = _COMPARE_RUN.match(name)
    return (m.group(1), int(m.group(2))) if m else (None, None)


def run_dir_for(parent: Path, strategy: str, seed: int) -> Path:
    return Path(parent) / run_dir_name(strategy, seed)


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)

    # ---------------------------------------------------------------- where things are
    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.json"

    @property
    def logs_dir(self) -> Path:
        """The trackers' logs (TensorBoard, ...)."""
        return self.path / "logs"

    def stage_dir(self, index: int, task: str) -> Path:
        return self.path / "stages" / f"{index:02d}-{task}"

    def eval_path(self, index: int, task: str) -> Path:
        return self.stage_dir(index, task) / "eval.json"

    def replay_path(self, index: int, task: str) -> Path:
        return self.stage_dir(index, task) / "replay.jsonl"

    def checkpoint(self, index: int) -> Path:
        return self.path / "checkpoints" / f"stage-{index:02d}.safetensors"

    def state_path(self, index: int) -> Path:
        """The methods' tensors after stage `index` (EWC's Fisher and anchors), beside its checkpoint."""
        return self.path / "checkpoints" / f"stage-{index:02d}.state.safetensors"

    def artifact_path(self, name: str) -> Path:
        """A strategy's run-level file (`inscl_distances` -> RUN_DIR/inscl_distances.json)."""
        return self.path / f"{name}.json"

    def artifact_names(self) -> list[str]:
        """The strategies' run-level files present (every JSON file at the top but the manifest and metrics)."""
        own = {self.manifest_path.name, self.metrics_path.name}
        return sorted(f.stem for f in self.path.glob("*.json") if f.name not in own)

    def stages_present(self) -> dict[int, str]:
        """Stage index -> task, for every stage folder present (a partial run has fewer)."""
        out = {}
        for d in sorted((self.path / "stages").glob("*")):
            m = _STAGE_DIR.match(d.name)
            if d.is_dir() and m:
                out[int(m.group(1))] = m.group(2)
        return out

    # ---------------------------------------------------------------- reading
    def manifest(self) -> dict:
        return read_json(self.manifest_path)

    def stored_config(self) -> dict:
        return yaml.safe_load(self.config_path.read_text(encoding="utf-8"))

    def finished(self) -> bool:
        """The run ended: every stage done, metrics.json written and the manifest's finish time set."""
        return (self.manifest_path.is_file() and self.metrics_path.is_file()
                and self.manifest().get("finished") is not None)

    # ---------------------------------------------------------------- writing
    def save_manifest(self, manifest: dict) -> None:
        write_json(self.manifest_path, manifest)

    def write_metrics(self, metrics: dict) -> None:
        write_json(self.metrics_path, metrics)

    def has_artifact(self, name: str) -> bool:
        return self.artifact_path(name).is_file()

    def write_artifact(self, name: str, data: dict) -> None:
        write_json(self.artifact_path(name), data)

    def record_stage(self, manifest: dict, entry: dict, evaluation: dict, replay: list[dict] | None = None,
                     train_log: list[dict] | None = None) -> None:
        """Write stage `entry`'s files, then save the manifest with the entry done: the commit point of a
        stage, so that a stage marked done has all of its files."""
        index, task = entry["index"], entry["task"]
        if replay is not None:
            write_jsonl(self.replay_path(index, task), replay)
        if train_log is not None:
            write_jsonl(self.stage_dir(index, task) / "train_log.jsonl", train_log)
        write_json(self.eval_path(index, task), evaluation)
        entry["status"] = "done"
        self.save_manifest(manifest)

    def drop_checkpoints(self, keep: int | None = None) -> None:
        """Remove every stage checkpoint (and methods' state) but stage `keep`'s (all of them when None)."""
        kept = {self.checkpoint(keep), self.state_path(keep)} if keep is not None else set()
        for old in (self.path / "checkpoints").glob("*.safetensors"):
            if old not in kept:
                old.unlink(missing_ok=True)

    def write_state(self, index: int, tensors: dict) -> None:
        """The methods' tensors after stage `index` (nothing is written when there are none)."""
        if tensors:
            from safetensors.torch import save

            atomic_write_bytes(self.state_path(index), save({k: t.contiguous() for k, t in tensors.items()}))

    def read_state(self, index: int) -> dict:
        path = self.state_path(index)
        if not path.is_file():
            return {}
        from safetensors.torch import load_file

        return load_file(str(path))

    def init(self, cfg: Config, task_names: list[str], resume: bool) -> dict:
        """Create the run (or check that a resumed run has the same config) and return its manifest."""
        cfg_dict = cfg.to_dict()
        if self.manifest_path.is_file():
            if not resume:
                raise InputError("a run already exists here; pass --resume to continue it or choose another -o",
                                 str(self.path))
            diff = config_difference(self.stored_config(), cfg_dict)
            if diff:
                raise InputError(f"the config differs from this run's ({diff}); resume with the same config "
                                 "(or none: the stored one is used)", str(self.config_path))
            return self.manifest()
        make_dir(self.path)
        write_yaml(self.config_path, cfg_dict)
        manifest: dict[str, Any] = {
            "config_hash": config_hash(cfg_dict),
            "model": cfg.model.name,
            "strategy": cfg.replay.strategy,
            "seed": cfg.seed,
            "versions": library_versions(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "finished": None,
            "stages": [{"index": i, "task": name, "status": "pending"}
                       for i, name in enumerate(["base", *task_names])],
            "strategy_state": {},
        }
        self.save_manifest(manifest)
        return manifest
