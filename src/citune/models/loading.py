"""Load any local causal LM (HF directory, GGUF file, embedded default, tiny random) with LoRA or full tuning."""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from citune.config import ModelConfig
from citune.data.prompt import PromptEncoder
from citune.errors import InputError
from citune.models.dropout import use_fast_dropout
from citune.models.embedded import EMBEDDED_NAMES, convert_gguf, embedded_model_dir

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}


@dataclass
class ModelBundle:
    model: torch.nn.Module
    tokenizer: object
    encoder: PromptEncoder
    base_dir: Path | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def context_window(self) -> int:
        """The longest sequence the model takes (its position embeddings; 2048 when it does not say)."""
        config = getattr(self.model, "config", None)
        return int(getattr(config, "max_position_embeddings", None) or 2048)


def check_model_path(cfg: ModelConfig) -> Path | None:
    """The local path `cfg.name` names (None for the embedded and tiny models), refused in one line when it is
    not a model; nothing is loaded or converted."""
    name = cfg.name
    if name.lower() in EMBEDDED_NAMES or name == "tiny":
        return None
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise InputError("GGUF model file not found", str(path))
        return path
    if not (path / "config.json").is_file():
        raise InputError("not a model: expected 'smollm2-135m', 'tiny', a .gguf file or a directory with config.json",
                         str(path), "model.name")
    if list(path.glob("*.bin")) and not list(path.glob("*.safetensors")):
        raise InputError("only safetensors weights are read (pickled .bin files are refused)", str(path))
    return path


def resolve_model_dir(cfg: ModelConfig, cache: Path) -> Path:
    """The directory of safetensors weights for `cfg.name` (converting a GGUF once)."""
    path = check_model_path(cfg)
    if path is None:
        return embedded_model_dir(cache)
    if path.suffix == ".gguf":
        import hashlib

        key = hashlib.sha1(f"{path.resolve()}:{path.stat().st_size}:{path.stat().st_mtime_ns}".encode()).hexdigest()[:12]
        return convert_gguf(path, cache / "models" / f"{path.stem}-{key}")
    return path


def check_attention(cfg: ModelConfig, file: str) -> None:
    """flash_attention_2 runs only on a CUDA GPU with the flash-attn package: say so before anything is loaded."""
    if cfg.attn_implementation != "flash_attention_2":
        return
    import importlib.util

    missing = [need for need, ok in (("the flash-attn package", importlib.util.find_spec("flash_attn") is not None),
                                     ("a CUDA GPU", torch.cuda.is_available())) if not ok]
    if missing:
        raise InputError(f"flash_attention_2 needs {' and '.join(missing)}, not found here: use sdpa (the default)",
                         file, "model.attn_implementation")


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """Recompute each decoder layer's activations in the backward pass (torch's non-reentrant checkpoint).
    transformers also makes the input embeddings' output require grad, which LoRA (frozen embeddings)
    needs for the reentrant variant."""
    model.activation_checkpointing_enable()


def load_tokenizer(model_dir: Path, cfg: ModelConfig):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=cfg.trust_remote_code)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


@contextlib.contextmanager
def seeded(seed: int):
    """Random weights drawn from `seed`, leaving the caller's global random state as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _tiny_model(cfg: ModelConfig, tok) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    t = cfg.tiny
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=t.hidden_size, intermediate_size=t.intermediate_size,
        num_hidden_layers=t.num_hidden_layers, num_attention_heads=t.num_attention_heads,
        num_key_value_heads=t.num_key_value_heads, max_position_embeddings=2048, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        attn_implementation=cfg.attn_implementation,
    )
    with seeded(t.seed):
        return LlamaForCausalLM(config)


def load_base(cfg: ModelConfig, cache: Path) -> tuple[torch.nn.Module, object, Path]:
    from transformers import AutoModelForCausalLM

    model_dir = resolve_model_dir(cfg, cache)
    tok = load_tokenizer(model_dir, cfg)
    if cfg.name == "tiny":
        model = _tiny_model(cfg, tok)
    else:
        model = AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=_DTYPES[cfg.dtype], trust_remote_code=cfg.trust_remote_code, use_safetensors=True,
            attn_implementation=cfg.attn_implementation)
    model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok, model_dir


def add_lora(model: torch.nn.Module, cfg: ModelConfig, seed: int) -> torch.nn.Module:
    """LoRA adapters initialised from `seed` (PEFT draws A from the global generator, whose start seed
    torch picks at random per process: unseeded, two runs of one config trained different models)."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=list(cfg.lora.target_modules), task_type="CAUSAL_LM")
    with seeded(seed), warnings.catch_warnings():
        # PEFT's PeftModel.__init__ reads `model.is_gradient_checkpointing`, which transformers 5.x
        # deprecated (FutureWarning) for `is_activation_checkpointing`; every PEFT entry point that
        # builds a PeftModel does it, so only this one warning is silenced, for this one call.
        warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        model = get_peft_model(model, lora)
    if cfg.lora.fast_dropout:
        use_fast_dropout(model)
    return model


def load_model(cfg: ModelConfig, cache: Path, state: Path | None = None, seed: int = 0) -> ModelBundle:
    """The trainable model: base (+ LoRA initialised from `seed`), optionally restored from a stage
    checkpoint `state`."""
    model, tok, model_dir = load_base(cfg, cache)
    if cfg.finetune == "lora":
        model = add_lora(model, cfg, seed)
    if state is not None:
        from citune.models.checkpoint import load_trainable

        load_trainable(model, state)
    return ModelBundle(model=model, tokenizer=tok, encoder=PromptEncoder(tok, cfg.chat_template, cfg.prompt_truncation),
                       base_dir=model_dir)
