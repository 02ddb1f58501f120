"""Prototype replay over instructions (METHODS §3.7): equal quotas; k-means over each old task's
instruction embeddings; instances of the prototype instructions (nearest the centroids) first."""
from __future__ import annotations

from citune.replay.base import ReplayRecord, StageContext, register
from citune.models.embeddings import instruction_embeddings
from citune.replay.per_task import EqualQuotaReplay
from citune.replay.prototype_data import prototype_order, seed_of
from citune.replay.sampling import instruction_groups, spread_sample
from citune.types import Task


@register("prototype-instruction")
class PrototypeInstruction(EqualQuotaReplay):
    plan_score = {"score_key": "prototype_rank", "descending": False}

    def pick(self, ctx: StageContext, task: Task, quota: int, shared=None) -> list[ReplayRecord]:
        ins = self.cfg.replay.inscl
        names, groups = instruction_groups(task)
        points = instruction_embeddings(self.cfg, names, ctx.cache_dir, ctx.model)
        k = ins.prototype_clusters or min(quota, len(names))
        order = prototype_order(points, k, seed_of(ctx, self.name, "kmeans", task.name))
        rank = {names[j]: r for r, j in enumerate(order)}
        picks = spread_sample(groups, order, quota, ctx.rng(self.name, task.name))
        return [ReplayRecord(task.train[i], {"quota": quota, "prototype_rank": rank[task.train[i].instruction]})
                for i in picks]
