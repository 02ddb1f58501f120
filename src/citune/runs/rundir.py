"""The run directory contract (ARCHITECTURE.md §2): config, manifest, stages, checkpoints."""
from __future__ import annotations

import hashlib
import json
import platform
import time
from pathlib import Path

import yaml

from citune.config import Config, config_difference
from citune.errors import InputError
from citune.io import make_dir, read_json, write_json, write_yaml


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


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def stage_dir(self, index: int, task: str) -> Path:
        return self.path / "stages" / f"{index:02d}-{task}"

    def checkpoint(self, index: int) -> Path:
        return self.path / "checkpoints" / f"stage-{index:02d}.safetensors"

    def manifest(self) -> dict:
        return read_json(self.manifest_path)

    def stored_config(self) -> dict:
        return yaml.safe_load((self.path / "config.yaml").read_text(encoding="utf-8"))

    def finished(self) -> bool:
        """The run ended: every stage done, metrics.json written and the manifest's finish time set."""
        return (self.manifest_path.is_file() and (self.path / "metrics.json").is_file()
                and self.manifest().get("finished") is not None)

    def save_manifest(self, manifest: dict) -> None:
        write_json(self.manifest_path, manifest)

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
                                 "(or none: the stored one is used)", str(self.path / "config.yaml"))
            return self.manifest()
        make_dir(self.path)
        write_yaml(self.path / "config.yaml", cfg_dict)
        manifest = {
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
