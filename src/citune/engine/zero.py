"""DeepSpeed ZeRO (stages 2 and 3): one engine for the whole run, a fresh optimizer state per stage.

citune makes a fresh AdamW at every stage, but DeepSpeed takes an optimizer only together with
its model, and a second engine over the same module fails (ZeRO-2's gradient partitioning breaks
in its first backward). So under DeepSpeed the model and one AdamW are prepared once
(`prepare_engine`) and every stage starts that optimizer afresh (`fresh_stage_optimizer`: state
cleared, learning rate back to its base value), which is what a new AdamW would be. The engine owns
the step: `backward_step` tells it where a gradient-accumulation group ends, and it clips
(`gradient_clipping`, set from `train.max_grad_norm`), steps and zeroes the gradients there.

Under ZeRO-3 every forward gathers parameters from all ranks, as under FSDP2: evaluation runs in
lockstep and checkpoints gather the trainable tensors (engine/sharding.py, engine/checkpoint.py).
"""
from __future__ import annotations

import math

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType

from citune.config import TrainConfig


def uses_deepspeed(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type == DistributedType.DEEPSPEED


def prepare_engine(accelerator: Accelerator, model: torch.nn.Module, cfg: TrainConfig, make_optimizer):
    """The DeepSpeed engine over `model` and an AdamW (`make_optimizer(model, cfg)`), with the
    run's batch, accumulation and clipping written into the DeepSpeed config first (Accelerate
    would otherwise ask for a dataloader to infer them)."""
    world = accelerator.num_processes
    micro = max(1, math.ceil(cfg.batch_size / world))
    ds = accelerator.state.deepspeed_plugin.deepspeed_config
    ds.update(train_micro_batch_size_per_gpu=micro, gradient_accumulation_steps=cfg.grad_accum,
              train_batch_size=micro * cfg.grad_accum * world, gradient_clipping=cfg.max_grad_norm)
    accelerator.gradient_accumulation_steps = cfg.grad_accum
    engine, _ = accelerator.prepare(model, make_optimizer(model, cfg))
    return engine


def fresh_stage_optimizer(engine, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The engine's own AdamW, reset to what a new one would be: no moments, no step count, the
    base learning rate (the stage's schedule is then made over it). ZeRO keeps the fp32 master
    partitions as this optimizer's parameters, so resetting it leaves the weights alone."""
    base = engine.optimizer.optimizer
    base.state.clear()
    for group in base.param_groups:
        group.pop("initial_lr", None)
        group["lr"] = cfg.lr
    return base


def backward_step(engine, loss: torch.Tensor, update: bool) -> None:
    """Backward through the engine; at the end of an accumulation group (`update`) it clips,
    steps and zeroes the gradients. The engine divides the loss by `gradient_accumulation_steps`
    itself, so the caller passes the loss of this micro-batch scaled for a group of that size."""
    engine.set_gradient_accumulation_boundary(update)
    engine.backward(loss)
    if update:
        engine.step()
