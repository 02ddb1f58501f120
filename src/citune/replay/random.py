"""Random replay: b random instances of each previous task."""
import numpy as np

from citune.replay.base import ReplayRecord, ReplayStrategy, register
from citune.types import Instance, Task


def random_draw(task: Task, n: int, rng: np.random.Generator) -> list[Instance]:
    """min(n, stored) training instances of `task`, drawn without replacement, in stored order."""
    n = min(n, len(task.train))
    picks = rng.choice(len(task.train), size=n, replace=False)
    return [task.train[i] for i in sorted(picks)]


@register("random")
class RandomReplay(ReplayStrategy):
    paper = "experience replay with random samples, the baseline of both papers"
    def select(self, ctx):
        records = []
        for task in ctx.previous:
            drawn = random_draw(task, ctx.per_task, ctx.rng("random", task.name))
            records += [ReplayRecord(x, {"quota": len(drawn)}) for x in drawn]
        return records
