"""InsCL (METHODS §3): Wasserstein-weighted task quotas, InsInfo-guided sampling inside each task.

`InsCLBase` holds the three InsCL variants' shared analysis — task distances W(j, i), quotas,
tags and InsInfo over the pool of tasks 1..i — and the variants differ only in how quotas are
split (`quota_by`) and how instances are drawn inside a task (`sample_by`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from citune.replay.base import ReplayRecord, ReplayStrategy, StageContext, register
from citune.replay.inscl.config import InsCLConfig
from citune.replay.inscl.insinfo import insinfo_scores
from citune.replay.quota import allocate
from citune.replay.sampling import insinfo_sample, uniform_sample
from citune.cache import content_key
from citune.replay.inscl.tagging import instruction_tags
from citune.replay.inscl.wasserstein import Support, distance_matrix, distance_table, task_support, w1

DISTANCES = "inscl_distances"  # the run-level artifact holding the K × K table
_ZERO = 1e-9  # distances below this are numerically zero (an exact solver on identical tasks gives ~1e-17)


@dataclass
class Analysis:
    """What an InsCL variant computes for one stage."""

    distances: list[float]  # W(j, i) for each previous task j
    quotas: list[int]
    tags: dict[str, list[str]]  # pool of tasks 1..i
    insinfo: dict[str, float]


def quota_weights(distances: Sequence[float], direction: str = "dissimilar") -> list[float]:
    """`dissimilar`: weights = distances (§3.3). `similar`: reciprocal distances; a task at distance 0
    (the limit of 1/W) then takes the whole budget, shared with any other task at distance 0."""
    d = np.asarray(distances, dtype=np.float64)
    if direction == "dissimilar":
        return np.where(d <= _ZERO, 0.0, d).tolist()
    if direction != "similar":
        raise ValueError(f"unknown direction {direction!r}")
    if (d <= _ZERO).any():
        return (d <= _ZERO).astype(float).tolist()
    return (1.0 / d).tolist()


class InsCLBase(ReplayStrategy):
    paper = "InsCL: Wang et al., InsCL: A Data-efficient Continual Learning Paradigm for Fine-tuning LLMs with Instructions, NAACL 2024"
    quota_by: ClassVar[str] = "distance"  # or "equal": b per previous task
    sample_by: ClassVar[str] = "insinfo"  # or "uniform"

    def __init__(self, cfg):
        super().__init__(cfg)
        self._supports: dict[str, Support] = {}

    # ---- analysis
    def support(self, ctx: StageContext, index: int) -> Support:
        """A task's (compressed) instruction distribution, computed once per strategy instance."""
        task = ctx.stream.tasks[index]
        key = content_key(task.name, *(x.uid for x in task.train))
        if key not in self._supports:
            self._supports[key] = task_support(ctx.cfg, task, ctx.cache_dir, ctx.model)
        return self._supports[key]

    def distances(self, ctx: StageContext) -> list[float]:
        ins = ctx.cfg.replay.inscl
        current = self.support(ctx, ctx.stage)
        return [w1(self.support(ctx, j), current, ins.solver, ins.sinkhorn_reg) for j in range(ctx.stage)]

    def write_matrix(self, ctx: StageContext) -> None:
        """The stream's K × K distance matrix in the run directory, written once per run."""
        if ctx.artifacts is None or ctx.artifacts.has_artifact(DISTANCES):
            return
        ins = ctx.cfg.replay.inscl
        matrix = distance_matrix([self.support(ctx, k) for k in range(len(ctx.stream.tasks))], ins.solver,
                                 ins.sinkhorn_reg)
        ctx.artifacts.write_artifact(DISTANCES, distance_table(ctx.stream.names, matrix, ctx.cfg))

    def analyse(self, ctx: StageContext) -> Analysis:
        ins = ctx.cfg.replay.inscl
        prev = ctx.previous
        dist = self.distances(ctx)
        weights = quota_weights(dist, ins.direction) if self.quota_by == "distance" else [1.0] * len(prev)
        quotas = allocate(ctx.budget, weights, [len(t.train) for t in prev])
        pool = list(dict.fromkeys(s for t in ctx.stream.tasks[: ctx.stage + 1] for s in t.instructions()))
        tags = instruction_tags(pool, ins, ctx.cache_dir)
        return Analysis(dist, quotas, tags, insinfo_scores(tags))

    # ---- selection
    def choose(self, ctx: StageContext) -> tuple[list[ReplayRecord], Analysis | None]:
        self.write_matrix(ctx)
        if not ctx.previous:
            return [], None
        a = self.analyse(ctx)
        records = []
        for task, quota, dist in zip(ctx.previous, a.quotas, a.distances):
            rng = ctx.rng(self.name, task.name)
            picks = (insinfo_sample(task, quota, a.insinfo, rng) if self.sample_by == "insinfo"
                     else uniform_sample(task, quota, rng))
            for i in picks:
                x = task.train[i]
                info = {"quota": quota, "w_distance": round(dist, 6),
                        "insinfo": round(a.insinfo.get(x.instruction, 0.0), 6),
                        "tags": list(a.tags.get(x.instruction, []))}
                records.append(ReplayRecord(x, info))
        return records, a

    def select(self, ctx: StageContext) -> list[ReplayRecord]:
        return self.choose(ctx)[0]

    def plan(self, ctx: StageContext) -> dict[str, Any]:
        from citune.replay.planning import summarise

        records, a = self.choose(ctx)
        return summarise(ctx, self.name, records, a.distances if a else None, score_key="insinfo")


@register("inscl", config=InsCLConfig)
class InsCL(InsCLBase):
    """Quotas ∝ W(j, i), InsInfo sampling inside each previous task (§3.2–3.6)."""
