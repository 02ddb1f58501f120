"""The model state after each stage: only the trainable tensors (the LoRA adapter, or all weights)."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from citune.io import atomic_write_bytes


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous().clone() for n, p in model.named_parameters() if p.requires_grad}


def save_trainable(model: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import save

    state = trainable_state(model)
    # Tied weights appear once among named_parameters, so no tensor shares storage here.
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
