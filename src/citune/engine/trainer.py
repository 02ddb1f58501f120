"""The stage trainer: AdamW, warmup + cosine decay, gradient accumulation, response-only loss.

Batches are length-grouped and left-padded (engine/batching.py); the loss computes vocabulary
logits only over the response tail (models/loss.py). Under `accelerate launch` with several
processes every rank trains on a slice of each global batch (`rank_slice`) and its loss is
weighted by its share of the batch's response tokens, so that DDP's gradient average equals the
gradient of the single-process token-mean loss on the same global batch: every rank runs the
same number of steps, and the run matches a single-process run up to floating-point rounding
(exactly so when nothing random happens inside the model: LoRA dropout draws differ per rank).
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from accelerate import Accelerator
from transformers import get_cosine_schedule_with_warmup

from citune.config import TrainConfig
from citune.engine.batching import (collate, encode_examples, length_grouped_batches, padding_stats, rank_slice,
                                    response_token_count)
from citune.models.loading import enable_gradient_checkpointing
from citune.models.loss import response_loss
from citune.seeds import seeded_rng
from citune.types import BatchScope, GradientProjection, Objective, Penalty, TrainExample
from citune.models.sharding import reshard
from citune.engine.zero import backward_step, fresh_stage_optimizer, prepare_engine, uses_deepspeed
from citune.errors import TrainingDiverged


@dataclass
class StageStats:
    steps: int
    examples: int
    train_tokens: int  # non-pad tokens of every global batch (all ranks together)
    seconds: float
    final_loss: float
    log: list[dict]
    padding_share: float = 0.0  # padded positions / all positions of the (global) batches
    projections: int | None = None  # updates whose gradient a GradientProjection changed (None: no projection)

    @property
    def tokens_per_second(self) -> float:
        return self.train_tokens / self.seconds if self.seconds > 0 else 0.0


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_processes() -> bool:
    """True when several processes were launched (torchrun / accelerate launch: WORLD_SIZE > 1) on a
    machine without a GPU: they then train on the CPU and talk over gloo. Accelerate alone would
    treat them as unrelated single processes unless ACCELERATE_USE_CPU is set."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def configure_threads(threads: int | None = None, local_processes: int | None = None) -> int:
    """Set PyTorch's intra-op threads: `threads` when given, else the cores of this machine divided
    among the processes running on it (LOCAL_WORLD_SIZE under `accelerate launch`). Returns the count."""
    if local_processes is None:
        local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("ACCELERATE_NUM_PROCESSES", "1")))
    n = threads or max(1, available_cores() // max(1, local_processes))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


# ------------------------------------------------------------------ memory

def reset_peak_memory() -> None:
    """Start a new peak-memory window (Linux resets VmHWM through /proc/self/clear_refs)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mb() -> dict[str, float]:
    """Peak resident memory of this process since the last reset (MiB), and peak GPU memory when used."""
    out: dict[str, float] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                out["peak_rss_mb"] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    if "peak_rss_mb" not in out:
        import resource

        out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


# ------------------------------------------------------------------ training

def _optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    try:  # one fused kernel for every tensor (CPU and GPU; what HF Trainer uses by default too)
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def plan_batches(lengths: list[int], cfg: TrainConfig, seed: int) -> list[list[int]]:
    """The global batches of every epoch, in training order (identical on every rank)."""
    rng = np.random.default_rng(seed)
    return [b for _ in range(cfg.epochs) for b in length_grouped_batches(lengths, cfg.batch_size, rng,
                                                                         cfg.group_by_length)]


def release(accelerator: Accelerator, *objects) -> None:
    """Drop the Accelerator's own references to prepared objects that are done with (a stage's
    optimizer, an expert's model): it keeps every prepared object otherwise, so a run of K stages of
    full fine-tuning would hold K optimizer states (two copies of the weights each). A DeepSpeed
    engine takes its optimizer (kept by the Accelerator in a wrapper) with it."""
    done = {id(o) for o in objects}
    engine_optimizers = {id(o.optimizer) for o in objects if uses_deepspeed(accelerator) and hasattr(o, "optimizer")}
    accelerator._optimizers = [o for o in accelerator._optimizers
                               if id(o) not in done and id(getattr(o, "optimizer", None)) not in engine_optimizers]
    accelerator._models = [m for m in accelerator._models if id(m) not in done]


def clip_gradients(accelerator: Accelerator, model: torch.nn.Module, max_norm: float) -> None:
    """Clip the global gradient norm (after unscaling fp16 gradients), as `accelerator.clip_grad_norm_`
    does, but also when several FSDP2 models are prepared (an expert beside the run's model): there
    Accelerate compares parameter lists elementwise and fails on the DTensors. torch's clip reduces
    DTensor gradients over their mesh itself."""
    accelerator.unscale_gradients()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], max_norm)


def prepare_for_training(accelerator: Accelerator, model: torch.nn.Module, cfg: TrainConfig,
                         checkpoint: Path | None = None) -> torch.nn.Module:
    """`model` as the stages train it: prepared by Accelerate (DDP, FSDP2), or under DeepSpeed the
    engine made once with its optimizer (engine/zero.py). `checkpoint`: the stage state already
    loaded into `model` on resume (DeepSpeed also restores its float32 masters from it)."""
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    if uses_deepspeed(accelerator):
        return prepare_engine(accelerator, model, cfg, _optimizer, checkpoint)
    return accelerator.prepare(model)


def train_stage(accelerator: Accelerator, bundle, examples: list[TrainExample], cfg: TrainConfig, seed: int,
                objective: Objective | None = None, bars=None, label: str = "train",
                model: torch.nn.Module | None = None, penalties: Sequence[Penalty] = (),
                projection: GradientProjection | None = None) -> StageStats:
    """Fine-tune `bundle.model` in place on `examples` for `cfg.epochs` epochs. `objective` replaces the
    response loss, each of `penalties` is added to it, and `projection` adjusts every update's gradient."""
    seed_everything(seed)
    model = model if model is not None else bundle.model  # the Accelerate-prepared model when given
    rows = encode_examples(bundle.encoder, examples, cfg.max_length, objective)
    lengths = [len(r["input_ids"]) for r in rows]
    resp = [response_token_count(r) for r in rows]
    batches = plan_batches(lengths, cfg, seed)
    world, rank = accelerator.num_processes, accelerator.process_index
    total_updates = max(1, math.ceil(len(batches) / cfg.grad_accum))
    deepspeed = uses_deepspeed(accelerator)
    reshard(model)  # FSDP2: the optimizer must get the shards, not what evaluation left gathered
    optimizer = fresh_stage_optimizer(model, cfg) if deepspeed else _optimizer(model, cfg)
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_updates), total_updates)
    # Under FSDP2 Accelerate prepares an optimizer only together with its model; made over the
    # shards, this one needs nothing more. The scheduler is stepped by hand, once per update.
    if not (accelerator.is_fsdp2 or deepspeed):
        optimizer = accelerator.prepare(optimizer)
    pad_id = bundle.tokenizer.pad_token_id
    reference = ReferenceGradient(accelerator, model, bundle, projection, cfg, seed) if projection else None
    task = bars.add_task(label, total=len(batches), info="") if bars is not None else None
    model.train()
    log, tokens, start, loss_value = [], 0, time.perf_counter(), float("nan")
    for step, batch_idx in enumerate(batches, 1):
        group_start = (step - 1) // cfg.grad_accum * cfg.grad_accum
        group_size = min(cfg.grad_accum, len(batches) - group_start)
        update = step == group_start + group_size
        with contextlib.nullcontext() if update or deepspeed else accelerator.no_sync(model):
            loss, extra = rank_loss(model, objective, penalties, rows, resp, batch_idx, rank, world, pad_id,
                                    accelerator.device)
            # The loss of the whole global batch, identical on every rank.
            shown = loss.detach()
            if world > 1:
                shown = accelerator.reduce(shown, reduction="sum") / world
            loss_value = float(shown)
            if not math.isfinite(loss_value):
                raise TrainingDiverged(f"{label}: loss is {loss_value} at step {step}; the stage was stopped")
            if deepspeed:  # the engine divides by its gradient_accumulation_steps (= cfg.grad_accum)
                backward_step(model, loss * (cfg.grad_accum / group_size), update)
            else:
                accelerator.backward(loss * (1 / group_size))
        if update:
            if reference is not None:
                reference.project()
            if not deepspeed:  # the engine clipped, stepped and zeroed in backward_step
                clip_gradients(accelerator, model, cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            scheduler.step()
        tokens += sum(lengths[i] for i in batch_idx)
        elapsed = time.perf_counter() - start
        log.append({"step": step, "loss": round(loss_value, 6), "lr": scheduler.get_last_lr()[0],
                    "tokens": tokens, "tokens_per_s": round(tokens / max(elapsed, 1e-9), 1),
                    **{k: round(float(v), 6) for k, v in extra.items()}})
        if task is not None:
            bars.update(task, advance=1, info=f"loss {loss_value:.3f} · {tokens / max(elapsed, 1e-9):,.0f} tok/s")
    model.eval()
    if not deepspeed:  # the engine's optimizer lives as long as the run
        release(accelerator, optimizer)
    if task is not None:
        bars.remove_task(task)
    return StageStats(steps=len(batches), examples=len(rows), train_tokens=tokens,
                      seconds=time.perf_counter() - start, final_loss=loss_value, log=log,
                      padding_share=round(padding_stats(lengths, batches)["padding_share"], 4),
                      projections=reference.projected if reference is not None else None)


def rank_loss(model: torch.nn.Module, objective: Objective | None, penalties: Sequence[Penalty], rows: list[dict],
              resp: list[int], batch_idx: list[int], rank: int, world: int, pad_id: int, device) -> tuple[torch.Tensor, dict]:
    """This rank's share L_r of the global batch's loss, such that DDP's average of the gradients,
    mean_r grad L_r, is the gradient of the single-process loss on the whole batch.

    The response loss is a token mean: a rank's own token mean is weighted by world x its share of the
    batch's response tokens. A `scoped` objective (one whose terms have other units, as KPIG's hinge, a
    mean over examples) is given the batch's global counts (`BatchScope`) and returns its share itself.
    Penalties count once: world / (ranks holding rows) on each rank that holds rows. A rank left without
    rows (a batch smaller than the world) still runs a step on one row, weighted 0."""
    part = rank_slice(batch_idx, rank, world)
    batch = {k: v.to(device) for k, v in collate([rows[i] for i in part or batch_idx[:1]], pad_id).items()}
    if getattr(objective, "scoped", False):
        scope = BatchScope(world, sum(resp[i] for i in batch_idx), labelled_rows(rows, batch_idx))
        loss, extra = objective.loss(model, batch, scope)
        loss = loss if part else loss * 0.0
    else:
        loss, extra = objective.loss(model, batch) if objective is not None else (response_loss(model, batch), {})
        loss = loss * (world * sum(resp[i] for i in part) / max(1, sum(resp[i] for i in batch_idx)) if part else 0.0)
    presence = world / min(world, len(batch_idx)) if part else 0.0
    for term in penalties:
        value, logged = term.penalty()
        loss = loss + value * presence
        extra.update(logged)
    return loss, extra


def labelled_rows(rows: list[dict], batch_idx: list[int]) -> dict[str, int]:
    """For each `*labels` key, how many rows of the batch have a labelled position in it."""
    keys = [k for k in rows[batch_idx[0]] if k.endswith("labels")]
    return {k: sum(any(t != -100 for t in rows[i][k]) for i in batch_idx) for k in keys}


class ReferenceGradient:
    """A-GEM's side of an update: the gradient of the response loss on a memory batch (drawn afresh for
    every update, the same draw on every rank), each rank taking its slice and weight as in training and
    the result averaged over the ranks as DDP averages the training gradient; then the projection."""

    def __init__(self, accelerator: Accelerator, model: torch.nn.Module, bundle, projection: GradientProjection,
                 cfg: TrainConfig, seed: int):
        self.accelerator, self.projection, self.cfg = accelerator, projection, cfg
        self.module = accelerator.unwrap_model(model)  # its own forward: DDP would wait for a second all-reduce
        self.params = [p for p in self.module.parameters() if p.requires_grad]
        self.rows = encode_examples(bundle.encoder, projection.memory, cfg.max_length)
        self.resp = [response_token_count(r) for r in self.rows]
        self.pad_id = bundle.tokenizer.pad_token_id
        self.rng = seeded_rng(seed, "reference-gradient")
        self.projected = 0

    def gradient(self) -> list[torch.Tensor]:
        acc, world = self.accelerator, self.accelerator.num_processes
        pick = sorted(int(i) for i in self.rng.choice(len(self.rows), size=min(self.cfg.batch_size, len(self.rows)),
                                                      replace=False))
        loss, _ = rank_loss(self.module, None, (), self.rows, self.resp, pick, acc.process_index, world, self.pad_id,
                            acc.device)
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(self.params, grads)]
        if world > 1:
            flat = acc.reduce(torch.cat([g.reshape(-1) for g in grads]), reduction="sum") / world
            grads = list(torch.split(flat, [g.numel() for g in grads]))
        return [g.reshape(p.shape) for g, p in zip(grads, self.params)]

    def project(self) -> None:
        if not self.rows:
            return
        reference = self.gradient()
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        self.projected += bool(self.projection.project([p.grad for p in self.params], reference))
