"""DeepSpeed ZeRO (stages 2 and 3): one engine for the whole run, a fresh optimizer state per stage.

citune makes a fresh AdamW at every stage, but DeepSpeed takes an optimizer only together with
its model, and a second engine over the same module fails (ZeRO-2's gradient partitioning breaks
in its first backward). So under DeepSpeed the model and one AdamW are prepared once
(`prepare_engine`) and every stage starts that optimizer afresh (`fresh_stage_optimizer`: state
zeroed in place, learning rate back to its base value), which is what a new AdamW would be. The engine owns
the step: `backward_step` tells it where a gradient-accumulation group ends, and it clips
(`gradient_clipping`, set from `train.max_grad_norm`), steps and zeroes the gradients there.

Under ZeRO-3 every forward gathers parameters from all ranks, as under FSDP2: evaluation runs in
lockstep and checkpoints gather the trainable tensors (models/sharding.py, models/checkpoint.py).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from safetensors.torch import load_file
from accelerate import Accelerator
from accelerate.utils import DistributedType

from citune.config import TrainConfig


def uses_deepspeed(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type == DistributedType.DEEPSPEED


def load_models_whole(accelerator: Accelerator) -> None:
    """Under DeepSpeed, Accelerate registers its config with transformers, which then partitions
    every model `from_pretrained` loads in a ZeRO-3 run (zero.Init): the run's model, and also the
    sentence encoder, taggers and base models citune reads whole beside it. citune hands the
    engine a whole model instead (ZeRO-3 partitions it when the engine is made), so the
    registration is dropped. (Each rank then loads the whole model once, and each GPU holds it
    whole until the engine partitions it: a model must fit on one GPU at start-up.)"""
    if uses_deepspeed(accelerator):
        from transformers.integrations import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()


def prepare_engine(accelerator: Accelerator, model: torch.nn.Module, cfg: TrainConfig, make_optimizer,
                   checkpoint: Path | None = None):
    """The DeepSpeed engine over `model` and an AdamW (`make_optimizer(model, cfg)`), with the
    run's batch, accumulation and clipping written into the DeepSpeed config first (Accelerate
    would otherwise ask for a dataloader to infer them). Gradients accumulate in float32 under
    bf16 too, as under DDP with autocast. On resume, `checkpoint` (already loaded into `model`)
    also becomes the float32 masters: the engine made them from the module, which bf16 rounded."""
    world = accelerator.num_processes
    micro = max(1, math.ceil(cfg.batch_size / world))
    ds = accelerator.state.deepspeed_plugin.deepspeed_config
    ds.update(train_micro_batch_size_per_gpu=micro, gradient_accumulation_steps=cfg.grad_accum,
              train_batch_size=micro * cfg.grad_accum * world, gradient_clipping=cfg.max_grad_norm)
    ds.setdefault("data_types", {}).setdefault("grad_accum_dtype", "fp32")
    accelerator.gradient_accumulation_steps = cfg.grad_accum
    engine, _ = accelerator.prepare(model, make_optimizer(model, cfg))
    if checkpoint is not None:
        _restore_masters(engine, checkpoint)
    return engine


def _restore_masters(engine, checkpoint: Path) -> None:
    state = load_file(str(checkpoint))
    for name, p in engine.module.named_parameters():
        if p.requires_grad and name in state:  # each rank copies its own partition: no collective
            _set_master(p, state[name].float())


def _set_master(p: torch.nn.Parameter, value: torch.Tensor) -> None:
    from deepspeed.utils import safe_set_full_fp32_param, safe_set_local_fp32_param

    if not hasattr(p, "ds_id"):  # ZeRO-2: each rank's fragment is cut from the whole tensor
        safe_set_full_fp32_param(p, value)
        return
    # ZeRO-3 pads every partition to ceil(numel / ranks), and its set_full reads past the end of an
    # unpadded value on the last rank; so this rank's padded slice is cut here.
    size = p.ds_tensor.numel()
    group = p.ds_process_group
    rank, world = torch.distributed.get_rank(group=group), torch.distributed.get_world_size(group=group)
    flat = torch.nn.functional.pad(value.flatten(), (0, size * world - value.numel()))
    safe_set_local_fp32_param(p, flat[size * rank: size * (rank + 1)])


def fresh_stage_optimizer(engine, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The engine's own AdamW, reset to what a new one would be: moments and step counts zeroed,
    the base learning rate (the stage's schedule is then made over it). ZeRO keeps the fp32 master
    partitions as this optimizer's parameters, so resetting it leaves the weights alone. The state
    is zeroed in place, not dropped: ZeRO-2 links views of the moments to each parameter once
    (`_hp_mapping`), and new tensors would leave those views on stale, still-allocated ones."""
    base = engine.optimizer.optimizer
    for state in base.state.values():
        for value in state.values():
            if torch.is_tensor(value):
                value.zero_()
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
