"""The model state after each stage: only the trainable tensors (the LoRA adapters, or all weights)."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from citune.models.sharding import params_sharded
from citune.io import atomic_write_bytes


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable tensors, whole, on the CPU. Under FSDP2 a parameter is a DTensor holding this
    rank's shard: it is gathered (`full_tensor`). Under DeepSpeed ZeRO the float32 master copy the
    optimizer holds is assembled from its partitions (`safe_get_full_fp32_param`): under bf16 the
    module's own parameters are rounded copies. Either gather is a collective, so then every rank
    must call this, and in one order (`gathered_on_every_rank`)."""
    out = {}
    for name, p in model.named_parameters():
        if p.requires_grad or _adapter_weight(name):
            out[name] = _whole(p).cpu().contiguous().clone()
    return out


def _adapter_weight(name: str) -> bool:
    """A LoRA tensor, trained in an earlier stage and frozen now (O-LoRA keeps one adapter per task)."""
    return ".lora_" in name


def gathered_on_every_rank(model: torch.nn.Module) -> bool:
    """True when copying the trainable tensors is a collective (FSDP2, DeepSpeed ZeRO)."""
    return params_sharded(model) or any(_zero_managed(p) for p in model.parameters())


def _zero_managed(p: torch.nn.Parameter) -> bool:  # ZeRO-3 partitions (ds_id); ZeRO-1/2 map fragments
    return hasattr(p, "ds_id") or hasattr(p, "_hp_mapping")


def _whole(p: torch.nn.Parameter) -> torch.Tensor:
    if _zero_managed(p):
        from deepspeed.utils import safe_get_full_fp32_param

        return safe_get_full_fp32_param(p)
    t = p.detach()
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def save_trainable(model: torch.nn.Module, path: Path, write: bool = True) -> None:
    """Write the trainable tensors to `path` (atomically) when `write`. Under FSDP2 and DeepSpeed
    every rank must call this, writer or not: each tensor is gathered from all of them."""
    from safetensors.torch import save

    if not (write or gathered_on_every_rank(model)):
        return
    state = trainable_state(model)
    if write:  # tied weights appear once among named_parameters, so no tensor shares storage here
        atomic_write_bytes(path, save(state))


def load_trainable(model: torch.nn.Module, path: Path) -> None:
    state = load_file(str(path))
    params = dict(model.named_parameters())
    missing = [n for n in state if n not in params]
    if missing:
        raise RuntimeError(f"{path}: checkpoint tensors not in the model: {missing[:3]}")
    with torch.no_grad():
        for n, t in state.items():
            params[n].copy_(t.to(params[n].dtype))


__all__ = ["save_trainable", "load_trainable", "trainable_state", "save_file"]
