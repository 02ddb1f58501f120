"""Mixed precision (`train.mixed_precision`): Accelerate's autocast over float32 weights and optimizer state.

`auto` leaves the choice to an `accelerate launch` profile when one set it, else takes bf16 on a CUDA GPU
that supports it and no autocast on the CPU, where bf16 matrix work is slower than float32 on most CPUs.
"""
from __future__ import annotations

import os

import torch

from citune.config import TrainConfig
from citune.errors import InputError


def mixed_precision(cfg: TrainConfig) -> str | None:
    """The Accelerator's `mixed_precision` argument (None: the launch profile's setting)."""
    if cfg.mixed_precision != "auto":
        return cfg.mixed_precision
    if os.environ.get("ACCELERATE_MIXED_PRECISION"):
        return None
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def check_precision(cfg: TrainConfig, file: str) -> None:
    """A precision this machine cannot compute in, refused before anything is written."""
    if cfg.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise InputError("fp16 autocast needs a CUDA GPU: use bf16 or no on the CPU", file, "train.mixed_precision")
    if cfg.mixed_precision == "bf16" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        raise InputError("this GPU has no bf16: use fp16 (with loss scaling) or no", file, "train.mixed_precision")


def fresh_state(precision: str | None) -> None:
    """Let one process run configs of different precision one after another (tests, `citune compare`):
    Accelerate keeps one shared state per process and refuses a second precision. Only a single process
    may reset it; launched processes keep theirs."""
    from accelerate.state import AcceleratorState

    shared = AcceleratorState._shared_state
    if (precision is not None and shared and shared.get("_mixed_precision") not in (None, precision)
            and int(os.environ.get("WORLD_SIZE", "1")) == 1):
        AcceleratorState._reset_state()


def check_launch(cfg: TrainConfig, processes: int, file: str) -> None:
    """A recipe's effective batch must be what the launch trains with: batch_size x grad_accum (checked
    when the config is read) with batch_size split evenly over the processes."""
    if cfg.effective_batch is not None and cfg.batch_size % processes:
        raise InputError(f"{cfg.batch_size} does not split evenly over {processes} processes (effective batch "
                         f"{cfg.effective_batch} = per-device batch x grad_accum {cfg.grad_accum} x processes)",
                         file, "train.batch_size")
