"""What benchmarks/gpu_check.sh carries to a GPU machine that has only PyTorch, transformers, PEFT,
Accelerate and sentence-transformers, no network, and takes at most 64 MiB of files.

    python benchmarks/gpu_assets.py prepare [--dir .gpu]   # here, with the package index reachable
    python benchmarks/gpu_assets.py check   [--dir .gpu]   # what is there, and its size
    python benchmarks/gpu_assets.py models  [--dir .gpu] --out DIR   # there: random-weight model dirs

`prepare` writes DIR (git-ignored):
- wheels/: the Python 3.12 manylinux wheels of citune's dependencies that the GPU image lacks (pydantic,
  rouge-score, rapidfuzz, gguf, ..., TRL and datasets for the training peer, setuptools to build citune);
  POT (33 MB) is left out: the check runs no InsCL, whose distances need it;
- models/<name>/: config.json and the tokenizer of each model below, no weights (the embedded
  SmolLM2-135M-Instruct's weights are 270 MB): `models` builds random weights from the config there,
  which throughput does not mind;
- superni/: the SuperNI stream file and, of each task of the 16 categories and the held-out ones,
  the first 96 instances (the scripts build the whole stream; the whole files are 1.6 GB). A slice of ../shared/data/superni for the check only: never committed.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUPERNI = ROOT.parent / "shared" / "data" / "superni"
LIMIT_MB = 64
# Missing from the GPU image (device KINDS.md lists what it has): citune's dependencies and TRL's.
WHEELS = ["pydantic", "pydantic-core", "annotated-types", "typing-inspection", "rapidfuzz", "rouge-score", "nltk",
          "gguf", "platformdirs", "trl==1.16.0", "datasets", "dill", "multiprocess", "setuptools>=77"]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64"]
# SmolLM2-1.7B's architecture (its published config.json), for throughput at a size people train on GPUs.
SMOLLM2_1_7B = {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 24, "num_attention_heads": 32,
                "num_key_value_heads": 32, "max_position_embeddings": 8192, "rope_theta": 130000}
INSTANCES = 96


def prepare(out: Path) -> None:
    from citune.models.embedded import embedded_model_dir
    from citune.paths import cache_root

    if out.exists():
        shutil.rmtree(out)
    wheels = out / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp",
                    *[a for p in PLATFORMS for a in ("--platform", p)], "-d", str(wheels), *WHEELS], check=True)
    source = embedded_model_dir(cache_root())
    small = out / "models" / "smollm2-135m"
    small.mkdir(parents=True)
    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                 "chat_template.jinja"):
        if (source / name).is_file():
            shutil.copy2(source / name, small / name)
    large = out / "models" / "smollm2-1.7b"
    shutil.copytree(small, large)
    config = json.loads((small / "config.json").read_text())
    (large / "config.json").write_text(json.dumps({**config, **SMOLLM2_1_7B}, indent=2))
    slice_superni(SUPERNI, out / "superni")
    check(out)


def slice_superni(src: Path, dest: Path) -> None:
    stream = json.loads((src / "streams" / "superni16.json").read_text())
    tasks = [t for c in stream["orders"]["curriculum"] for t in stream["categories"][c]]
    tasks += [t for held in stream["held_out"].values() for t in held]
    (dest / "streams").mkdir(parents=True)
    (dest / "tasks").mkdir()
    shutil.copy2(src / "streams" / "superni16.json", dest / "streams" / "superni16.json")
    for task in dict.fromkeys(tasks):
        data = json.loads((src / "tasks" / f"{task}.json").read_text())
        data["Instances"] = data["Instances"][:INSTANCES]
        data.pop("Positive Examples", None), data.pop("Negative Examples", None)
        (dest / "tasks" / f"{task}.json").write_text(json.dumps(data))


def check(out: Path) -> None:
    if not out.is_dir():
        sys.exit(f"{out}: missing; run `python benchmarks/gpu_assets.py prepare` where the package index is reachable")
    sizes = {p.name: sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / 2**20 for p in out.iterdir()}
    total = sum(sizes.values())
    print(f"{out}: " + ", ".join(f"{k} {v:.1f} MiB" for k, v in sorted(sizes.items())) + f"; total {total:.1f} MiB "
          f"(limit {LIMIT_MB} MiB with the working tree)")
    if total > LIMIT_MB - 8:
        sys.exit(f"{out}: {total:.1f} MiB leaves too little of the {LIMIT_MB} MiB for the working tree")


def models(assets: Path, out: Path) -> None:
    """Random-weight model directories (safetensors) from the carried configs and tokenizers."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    for source in sorted((assets / "models").iterdir()):
        target = out / source.name
        shutil.copytree(source, target, dirs_exist_ok=True)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(source), dtype=torch.float32)
        model.save_pretrained(target)
        print(f"{target}: {sum(p.numel() for p in model.parameters()) / 1e6:.0f} M parameters, random weights")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=["prepare", "check", "models"])
    ap.add_argument("--dir", type=Path, default=ROOT / ".gpu")
    ap.add_argument("--out", type=Path, default=None, help="models: where the model directories go")
    args = ap.parse_args()
    if args.action == "prepare":
        prepare(args.dir)
    elif args.action == "check":
        check(args.dir)
    else:
        models(args.dir, args.out or Path("/tmp/citune-gpu/models"))


if __name__ == "__main__":
    main()
