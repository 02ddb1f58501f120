"""Multitask: joint training on all data of tasks 1..t (an upper reference, not a budgeted replay)."""
from citune.replay.base import ReplayRecord, ReplayStrategy, register


@register("multitask")
class Multitask(ReplayStrategy):
    paper = "joint training on every task seen so far, the upper reference"
    def select(self, ctx):
        return [ReplayRecord(x, {"quota": len(t.train)}) for t in ctx.previous for x in t.train]
