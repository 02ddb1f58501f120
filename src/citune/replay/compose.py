"""A combination `replay.strategy: a+b+...`: at most one replay strategy chooses R_t (none when no part
does), and every training method adds its hooks (EWC on top of InsCL, A-GEM beside random replay).
Hooks combine when they do not compete: one batch objective (KPIG's hinge or LwF's distillation), one
gradient projection, one set of per-task adapters; anything else is bad input, said before a run starts."""
from __future__ import annotations

from typing import Any

from citune.errors import InputError
from citune.config import config_file
from citune.replay.base import ReplayRecord, ReplayStrategy, StageContext, strategy_class, strategy_names
from citune.types import StageHooks, TrainExample


class Combination(ReplayStrategy):
    def __init__(self, name: str, members: list[ReplayStrategy], cfg):
        super().__init__(cfg)
        self.name = name
        self.members = members
        replays = [m for m in members if m.role == "replay"]
        self.replay = replays[0] if replays else None
        self.needs_model = any(m.needs_model for m in members)
        owners = [m.name for m in members if m.owns_objective()]
        if len(owners) > 1:
            raise InputError(f"{' and '.join(owners)} both define the training loss and cannot be combined (for "
                             "kpig, replay.kpig.objective=false keeps its replay and drops its hinge)",
                             config_file(cfg), "replay.strategy")
        for kind, clash in (("adapters", "manage the LoRA adapters"), ("projects", "project the gradient")):
            names = [m.name for m in members if getattr(m, kind)]
            if len(names) > 1:
                raise InputError(f"{' and '.join(names)} both {clash}", config_file(cfg), "replay.strategy")

    @property
    def parts(self) -> list[ReplayStrategy]:
        return list(self.members)

    @property
    def replay_name(self) -> str:
        return self.replay.name if self.replay else "none"

    @property
    def distributed(self) -> tuple[str, ...] | None:
        allowed = [set(m.distributed) for m in self.members if m.distributed is not None]
        return tuple(sorted(set.intersection(*allowed))) if allowed else None

    def select(self, ctx: StageContext) -> list[ReplayRecord]:
        return self.replay.select(ctx) if self.replay else []

    def training_data(self, ctx: StageContext, replay: list[ReplayRecord]) -> list[TrainExample]:
        return (self.replay or super()).training_data(ctx, replay)

    def plan(self, ctx: StageContext) -> dict[str, Any]:
        return self.replay.plan(ctx) if self.replay else super().plan(ctx)

    def hooks(self, ctx: StageContext, examples: list[TrainExample]) -> StageHooks:
        out = StageHooks()
        for m in self.members:
            h = m.hooks(ctx, examples)
            out.objective = out.objective or h.objective
            out.projection = out.projection or h.projection
            out.penalties += h.penalties
        return out

    def after_stage(self, ctx: StageContext) -> None:
        for m in self.members:
            m.after_stage(ctx)

    def check(self) -> None:
        for m in self.members:
            m.check()

    def setup_model(self, bundle, stream) -> None:
        for m in self.members:
            m.setup_model(bundle, stream)

    def final_model(self, bundle, stream) -> None:
        for m in self.members:
            m.final_model(bundle, stream)

    def state_tensors(self) -> dict:
        return {f"{m.name}/{k}": v for m in self.members for k, v in m.state_tensors().items()}

    def load_state_tensors(self, tensors: dict) -> None:
        for m in self.members:
            prefix = f"{m.name}/"
            m.load_state_tensors({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})

    def stage_facts(self) -> dict[str, Any]:
        return {k: v for m in self.members for k, v in m.stage_facts().items()}


def get_strategy(name: str, cfg) -> ReplayStrategy:
    """The strategy `name` (a combination `a+b+...` too) for `cfg`."""
    for part in name.split("+"):
        if strategy_class(part) is None:
            raise InputError(f"unknown replay strategy '{part}' (known: {', '.join(strategy_names())})",
                             config_file(cfg), "replay.strategy")
    if "+" not in name:
        return strategy_class(name)(cfg)
    return Combination(name, [strategy_class(part)(cfg) for part in name.split("+")], cfg)
