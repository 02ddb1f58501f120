"""Random replay: b random instances of each previous task."""
from citune.replay.base import ReplayRecord, ReplayStrategy, register


@register("random")
class RandomReplay(ReplayStrategy):
    def select(self, ctx):
        records = []
        for task in ctx.previous:
            n = min(ctx.per_task, len(task.train))
            picks = ctx.rng("random", task.name).choice(len(task.train), size=n, replace=False)
            records += [ReplayRecord(task.train[i], {"quota": n}) for i in sorted(picks)]
        return records
