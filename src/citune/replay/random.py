"""Random replay: b random instances of each previous task; what a task cannot give (it stores fewer than
b) goes to the others, as every strategy's budget does, so that all spend B_t at a stage."""
import numpy as np

from citune.replay.base import ReplayRecord, StageContext, register
from citune.replay.per_task import EqualQuotaReplay
from citune.types import Instance, Task


def random_draw(task: Task, n: int, rng: np.random.Generator) -> list[Instance]:
    """min(n, stored) training instances of `task`, drawn without replacement, in stored order."""
    n = min(n, len(task.train))
    picks = rng.choice(len(task.train), size=n, replace=False)
    return [task.train[i] for i in sorted(picks)]


@register("random")
class RandomReplay(EqualQuotaReplay):
    paper = "experience replay with random samples, the baseline of both papers"

    def pick(self, ctx: StageContext, task: Task, quota: int, shared=None) -> list[ReplayRecord]:
        return [ReplayRecord(x, {"quota": quota}) for x in random_draw(task, quota, ctx.rng("random", task.name))]
