"""`citune export RUN_DIR -o DIR`: the run's final model as one Hugging Face model directory that
`transformers` loads (`AutoModelForCausalLM.from_pretrained(DIR)`): the base model with the last stage's
weights; LoRA adapters (every active one: O-LoRA's per-task adapters add up) merged into the weights."""
from __future__ import annotations

from pathlib import Path

from citune.config import load_config
from citune.data import build_stream
from citune.errors import InputError
from citune.io import make_dir
from citune.models import load_model
from citune.models.checkpoint import load_trainable
from citune.paths import cache_root
from citune.replay import get_strategy
from citune.runs.rundir import RunDir


def final_bundle(run_dir: Path):
    """The model as the run's last stage evaluated it (base + last checkpoint, the method's adapters)."""
    run = RunDir(run_dir)
    if not run.manifest_path.is_file():
        raise InputError("not a run directory (no manifest.json)", str(run_dir))
    stages = run.manifest().get("stages") or []
    done = [s["index"] for s in stages if s.get("status") == "done" and s["index"] > 0]
    if not done or not run.checkpoint(max(done)).is_file():
        raise InputError("no checkpoint of the last stage done (run.save_model=none, or no stage trained)",
                         str(run.path / "checkpoints"))
    cfg = load_config(str(run.config_path), [], stored=True)
    stream = build_stream(cfg)
    strategy = get_strategy(cfg.replay.strategy, cfg)
    bundle = load_model(cfg.model, cache_root(cfg.run.cache_dir), seed=cfg.seed)
    strategy.setup_model(bundle, stream)
    load_trainable(bundle.model, run.checkpoint(max(done)))
    strategy.final_model(bundle, stream)
    return bundle


def export_model(run_dir: Path, out: Path) -> Path:
    """Write the merged final model into `out` (a new or empty folder), whole or not at all."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError("exists and is not an empty folder; name a new one", str(out))
    bundle = final_bundle(run_dir)
    model = bundle.model
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.eval()
    partial = make_dir(out.with_name(f".{out.name}.partial"))
    model.save_pretrained(partial, safe_serialization=True)
    bundle.tokenizer.save_pretrained(partial)
    if out.exists():
        out.rmdir()
    partial.rename(out)
    return out
