"""Sharded parameters (FSDP2): what changes when no rank holds the whole model.

Under FSDP2 (and DeepSpeed ZeRO-3) every forward pass of the model gathers each layer's parameters
from all ranks, so a forward is a collective: the ranks must run the same number of them, in the same order. Training
and KPIG's scoring already do (every rank runs every step, on the same data); evaluation deals
different batches to different ranks, which generate for different numbers of steps. `lockstep`
pairs the forwards of the ranks there. Training starts from resharded parameters (`reshard`). (A
stage checkpoint gathers the full trainable tensors on every rank: `checkpoint.trainable_state`.)
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch


def params_sharded(model: torch.nn.Module) -> bool:
    """True when `model` (or a part of it) is sharded by FSDP2 (`fully_shard`) or DeepSpeed ZeRO-3."""
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(m, FSDPModule) for m in model.modules()) or zero3_partitioned(model)


def zero3_partitioned(model: torch.nn.Module) -> bool:
    """True when DeepSpeed ZeRO-3 has partitioned the parameters of `model` (they carry a `ds_id`)."""
    return any(hasattr(p, "ds_id") for p in model.parameters())


def reshard(model: torch.nn.Module) -> None:
    """Put the sharded parameters back in place of their gathered copies. Forwards without gradients
    (evaluation, IG scoring) leave the root module's parameters gathered, and `model.parameters()`
    then yields the gathered copies: an optimizer made over them would update copies that the next
    gather overwrites (seen: the tiny stream's loss fell far more slowly after an evaluation)."""
    from torch.distributed.fsdp import FSDPModule

    for m in model.modules():
        if isinstance(m, FSDPModule):
            m.reshard()


@contextlib.contextmanager
def lockstep(model: torch.nn.Module, pad_id: int) -> Iterator[None]:
    """Inside, each rank may call `model` any number of times: before every call the ranks agree
    (an all-reduce) on how many of them have a call to make, and a rank with none left runs a
    one-token forward in its place, until no rank has. Does nothing when parameters are not sharded.
    """
    if not params_sharded(model):
        yield
        return
    import torch.distributed as dist

    device = next(model.parameters()).device
    state = {"dummy": False}

    def agree(have_call: int) -> int:
        flag = torch.tensor([have_call], device=device)
        dist.all_reduce(flag)
        return int(flag.item())

    def before_forward(module, args, kwargs):
        if not state["dummy"]:
            agree(1)

    # prepend: the agreement must come before FSDP's own pre-forward gathers, on every rank alike
    handle = model.register_forward_pre_hook(before_forward, prepend=True, with_kwargs=True)
    try:
        yield
    finally:
        try:
            state["dummy"] = True
            one = torch.tensor([[pad_id]], device=device)
            with torch.no_grad():
                while agree(0) > 0:
                    model(input_ids=one, use_cache=False)
        finally:
            handle.remove()
