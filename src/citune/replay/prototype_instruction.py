"""Prototype replay over instructions (METHODS §3.7): equal quotas; k-means over each old task's
instruction embeddings; instances of the prototype instructions (nearest the centroids) first."""
from __future__ import annotations

from citune.replay.base import ReplayRecord, ReplayStrategy, StageContext, register
from citune.models.embeddings import instruction_embeddings
from citune.replay.prototype_data import equal_quotas, prototype_order, seed_of
from citune.replay.sampling import instruction_groups, spread_sample


@register("prototype-instruction")
class PrototypeInstruction(ReplayStrategy):
    def select(self, ctx: StageContext) -> list[ReplayRecord]:
        ins = self.cfg.replay.inscl
        records = []
        for task, quota in zip(ctx.previous, equal_quotas(ctx)):
            if quota == 0:
                continue
            names, groups = instruction_groups(task)
            points = instruction_embeddings(self.cfg, names, ctx.cache_dir, ctx.model)
            k = ins.prototype_clusters or min(quota, len(names))
            order = prototype_order(points, k, seed_of(ctx, self.name, "kmeans", task.name))
            rank = {names[j]: r for r, j in enumerate(order)}
            picks = spread_sample(groups, order, quota, ctx.rng(self.name, task.name))
            records += [ReplayRecord(task.train[i], {"quota": quota, "prototype_rank": rank[task.train[i].instruction]})
                        for i in picks]
        return records

    def plan(self, ctx: StageContext):
        from citune.replay.planning import summarise

        return summarise(ctx, self.name, self.select(ctx), score_key="prototype_rank", descending=False)
