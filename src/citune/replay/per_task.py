"""Strategies that split the budget equally over the previous tasks (b each, as random replay) and
differ only in which instances of a task they pick (METHODS §3.7's prototype and diversity baselines)."""
from __future__ import annotations

from typing import Any, ClassVar

from citune.replay.base import ReplayRecord, ReplayStrategy, StageContext
from citune.replay.quota import allocate
from citune.types import Task


def equal_quotas(ctx: StageContext) -> list[int]:
    """b per previous task — the random baseline's split — capped by what each task stores."""
    prev = ctx.previous
    return allocate(ctx.budget, [1.0] * len(prev), [len(t.train) for t in prev])


class EqualQuotaReplay(ReplayStrategy):
    """`pick(ctx, task, quota, shared)` chooses inside one task; `shared(ctx)` is computed once per stage."""

    paper = "a baseline of InsCL (Wang et al., NAACL 2024, §4)"
    plan_score: ClassVar[dict[str, Any]] = {}  # how `citune plan` orders a task's picks (planning.summarise)

    def shared(self, ctx: StageContext) -> Any:
        return None

    def pick(self, ctx: StageContext, task: Task, quota: int, shared: Any) -> list[ReplayRecord]:
        raise NotImplementedError

    def select(self, ctx: StageContext) -> list[ReplayRecord]:
        shared = self.shared(ctx)
        records = []
        for task, quota in zip(ctx.previous, equal_quotas(ctx)):
            if quota > 0:
                records += self.pick(ctx, task, quota, shared)
        return records

    def plan(self, ctx: StageContext) -> dict[str, Any]:
        from citune.replay.planning import summarise

        return summarise(ctx, self.name, self.select(ctx), **self.plan_score)
