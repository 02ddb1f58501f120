"""Diverse-instruction replay (METHODS §3.7): equal quotas; inside each old task, the instructions most
dissimilar to the current task's come first — dissimilarity = 1 − max cosine to any current instruction."""
from __future__ import annotations

import numpy as np

from citune.replay.base import ReplayRecord, StageContext, register
from citune.models.embeddings import instruction_embeddings
from citune.replay.per_task import EqualQuotaReplay
from citune.replay.sampling import descending_order, instruction_groups, spread_sample
from citune.types import Task


def dissimilarity(points: np.ndarray, current: np.ndarray) -> np.ndarray:
    """1 − max cos(x, c) over the current instructions (1 when the current task has none)."""
    if len(current) == 0:
        return np.ones(len(points))
    return 1.0 - (points.astype(np.float64) @ current.astype(np.float64).T).max(axis=1)


@register("diverse-instruction")
class DiverseInstruction(EqualQuotaReplay):
    plan_score = {"score_key": "dissimilarity"}

    def shared(self, ctx: StageContext) -> np.ndarray:
        """The current task's instruction embeddings."""
        current = ctx.current.instructions()
        return instruction_embeddings(self.cfg, current, ctx.cache_dir, ctx.model) if current else np.zeros((0, 0))

    def pick(self, ctx: StageContext, task: Task, quota: int, shared: np.ndarray) -> list[ReplayRecord]:
        names, groups = instruction_groups(task)
        dis = dissimilarity(instruction_embeddings(self.cfg, names, ctx.cache_dir, ctx.model), shared)
        rng = ctx.rng(self.name, task.name)
        picks = spread_sample(groups, descending_order(dis, rng), quota, rng)
        score = dict(zip(names, dis.tolist()))
        return [ReplayRecord(task.train[i], {"quota": quota, "dissimilarity": round(score[task.train[i].instruction], 6)})
                for i in picks]
