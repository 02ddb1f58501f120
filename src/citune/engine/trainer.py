"""The stage trainer: AdamW, warmup + cosine decay, gradient accumulation, response-only loss."""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from accelerate import Accelerator
from transformers import get_cosine_schedule_with_warmup

from citune.config import TrainConfig
from citune.engine.batching import collate, encode_examples, length_grouped_batches
from citune.engine.loss import response_loss
from citune.engine.objective import Objective, TrainExample
from citune.errors import TrainingDiverged


@dataclass
class StageStats:
    steps: int
    examples: int
    train_tokens: int
    seconds: float
    final_loss: float
    log: list[dict]

    @property
    def tokens_per_second(self) -> float:
        return self.train_tokens / self.seconds if self.seconds > 0 else 0.0


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def train_stage(accelerator: Accelerator, bundle, examples: list[TrainExample], cfg: TrainConfig, seed: int,
                objective: Objective | None = None, bars=None, label: str = "train",
                model: torch.nn.Module | None = None) -> StageStats:
    """Fine-tune `bundle.model` in place on `examples` for `cfg.epochs` epochs."""
    seed_everything(seed)
    model = model if model is not None else bundle.model  # the Accelerate-prepared model when given
    rows = encode_examples(bundle.encoder, examples, cfg.max_length, objective)
    lengths = [len(r["input_ids"]) for r in rows]
    rng = np.random.default_rng(seed)
    epoch_batches = [length_grouped_batches(lengths, cfg.batch_size, rng, cfg.group_by_length)
                     for _ in range(cfg.epochs)]
    micro = [b for e in epoch_batches for b in e]
    # Each process takes every n-th micro-batch; Accelerate averages gradients across processes.
    micro = micro[accelerator.process_index::accelerator.num_processes]
    total_updates = max(1, math.ceil(len(micro) / cfg.grad_accum))
    optimizer = _optimizer(model, cfg)
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_updates), total_updates)
    optimizer = accelerator.prepare(optimizer)  # the scheduler is stepped by hand, once per update
    pad_id = bundle.tokenizer.pad_token_id
    task = bars.add_task(label, total=len(micro), info="") if bars is not None else None
    model.train()
    log, tokens, start, loss_value = [], 0, time.perf_counter(), float("nan")
    for step, idx in enumerate(micro, 1):
        batch = {k: v.to(accelerator.device) for k, v in collate([rows[i] for i in idx], pad_id).items()}
        group_start = (step - 1) // cfg.grad_accum * cfg.grad_accum
        group_size = min(cfg.grad_accum, len(micro) - group_start)
        update = step == group_start + group_size
        with contextlib.nullcontext() if update else accelerator.no_sync(model):
            if objective is not None:
                loss, extra = objective.loss(model, batch)
            else:
                loss, extra = response_loss(model, batch), {}
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"{label}: loss is {loss.item()} at step {step}; the stage was stopped")
            accelerator.backward(loss / group_size)
        if update:
            accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        tokens += int(batch["attention_mask"].sum())
        loss_value = float(loss.detach())
        elapsed = time.perf_counter() - start
        log.append({"step": step, "loss": round(loss_value, 6), "lr": scheduler.get_last_lr()[0],
                    "tokens": tokens, "tokens_per_s": round(tokens / max(elapsed, 1e-9), 1),
                    **{k: round(float(v), 6) for k, v in extra.items()}})
        if task is not None:
            bars.update(task, advance=1, info=f"loss {loss_value:.3f} · {tokens / max(elapsed, 1e-9):,.0f} tok/s")
    model.eval()
    if task is not None:
        bars.remove_task(task)
    return StageStats(steps=len(micro), examples=len(rows), train_tokens=tokens,
                      seconds=time.perf_counter() - start, final_loss=loss_value, log=log)
