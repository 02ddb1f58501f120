"""A-GEM (Chaudhry et al., ICLR 2019), METHODS.md §5: an episodic memory of earlier tasks' training data
(`memory_per_task` instances each, drawn as random replay draws them, once per task: the memory of a
task is the same at every later stage, as an episodic memory filled when the task ends), never trained
on directly. At
every update the trainer computes a reference gradient g_ref on a memory batch (engine/trainer.py
`ReferenceGradient`, reduced over processes like the training gradient); when g . g_ref < 0 the update
uses g - (g . g_ref / g_ref . g_ref) g_ref. The manifest counts the projected updates per stage."""
from __future__ import annotations

from typing import Optional

import torch
from pydantic import Field

from citune.config import Strict
from citune.replay.base import DATA_PARALLEL, ReplayStrategy, StageContext, register
from citune.replay.random import random_draw
from citune.seeds import seeded_rng
from citune.types import StageHooks, TrainExample


class AGEMConfig(Strict):
    """A-GEM: project each update's gradient so that the loss on an episodic memory does not rise."""

    memory_per_task: Optional[int] = Field(None, ge=1, description="instances kept per earlier task; default: "
                                           "replay.per_task (the replay budget)")


def project(g: torch.Tensor, g_ref: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """A-GEM's rule on flat gradients: (g projected when it conflicts with g_ref, whether it did)."""
    dot = torch.dot(g, g_ref)
    if dot >= 0:
        return g, False
    return g - (dot / torch.dot(g_ref, g_ref).clamp(min=1e-30)) * g_ref, True


class AGEMProjection:
    def __init__(self, memory: list[TrainExample]):
        self.memory = memory

    def project(self, grads: list[torch.Tensor], reference: list[torch.Tensor]) -> bool:
        flat = torch.cat([g.reshape(-1).float() for g in grads])
        ref = torch.cat([r.reshape(-1).float() for r in reference])
        new, changed = project(flat, ref)
        if changed:
            for g, part in zip(grads, torch.split(new, [g.numel() for g in grads])):
                g.copy_(part.view_as(g).to(g.dtype))
        return changed


@register("agem", config=AGEMConfig)
class AGEM(ReplayStrategy):
    role = "training"
    paper = "A-GEM: Chaudhry et al., Efficient Lifelong Learning with A-GEM, ICLR 2019"
    distributed = DATA_PARALLEL
    projects = True

    def select(self, ctx: StageContext):
        return []

    def memory(self, ctx: StageContext) -> list[TrainExample]:
        per_task = self.cfg.replay.agem.memory_per_task or ctx.per_task
        return [TrainExample(x) for task in ctx.previous
                for x in random_draw(task, per_task, seeded_rng(ctx.seed, "agem-memory", task.name))]

    def hooks(self, ctx: StageContext, examples: list[TrainExample]) -> StageHooks:
        memory = self.memory(ctx)
        return StageHooks(projection=AGEMProjection(memory) if memory else None)
