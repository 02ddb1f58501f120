"""The replay interface: a strategy picks R_t from the stored data of tasks < t.

A new strategy is one module (or package) with a `ReplayStrategy` subclass decorated by
`@register("name")`, or `@register("name", config=ItsConfig)` to add the section `replay.name`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from citune.config import Strict, config_file, register_method
from citune.seeds import seeded_rng
from citune.types import Instance, Stream, Task, TrainExample
from citune.errors import InputError

if TYPE_CHECKING:
    from citune.config import Config
    from citune.types import Artifacts, Objective
    from citune.models.loading import ModelBundle


@dataclass
class ReplayRecord:
    """One replayed instance and why it was chosen (quota, distance, InsInfo, IG, ...)."""

    instance: Instance
    info: dict[str, Any] = field(default_factory=dict)

    def to_record(self, strategy: str, seed: int) -> dict:
        return {**self.instance.to_record(), "strategy": strategy, "seed": seed, **self.info}


@dataclass
class StageContext:
    """Everything a strategy may look at when it plans stage `stage` (0-based)."""

    cfg: "Config"
    stream: Stream
    stage: int
    cache_dir: Path
    model: "ModelBundle | None" = None  # the model after the previous stage; None when planning
    state: dict[str, Any] = field(default_factory=dict)  # strategy state kept across stages (JSON)
    artifacts: "Artifacts | None" = None  # the run's store for a strategy's own files; None: keep nothing

    @property
    def seed(self) -> int:
        return self.cfg.seed

    @property
    def current(self) -> Task:
        return self.stream.tasks[self.stage]

    @property
    def previous(self) -> list[Task]:
        return self.stream.tasks[: self.stage]

    @property
    def per_task(self) -> int:
        return self.cfg.replay.per_task

    @property
    def budget(self) -> int:
        """B_t = b * (t - 1): the same total for every strategy at this stage."""
        return self.per_task * self.stage

    def rng(self, *keys: Any) -> np.random.Generator:
        """A generator seeded by (seed, stage, keys): the same choices on every run and rank."""
        return seeded_rng(self.seed, self.stage, *keys)


class ReplayStrategy:
    name: ClassVar[str] = ""
    needs_model: ClassVar[bool] = False  # True when selection uses the trained model

    def __init__(self, cfg: "Config"):
        self.cfg = cfg

    def select(self, ctx: StageContext) -> list[ReplayRecord]:
        raise NotImplementedError

    def training_data(self, ctx: StageContext, replay: list[ReplayRecord]) -> list[TrainExample]:
        """The stage's training examples: D_t, then the replayed instances (flagged as replay)."""
        return ([TrainExample(x) for x in ctx.current.train]
                + [TrainExample(r.instance, is_replay=True) for r in replay])

    def plan(self, ctx: StageContext) -> dict[str, Any]:
        """A dry-run summary of stage `ctx.stage` for `citune plan` (model-free strategies only)."""
        records = self.select(ctx)
        quotas: dict[str, int] = {t.name: 0 for t in ctx.previous}
        for r in records:
            quotas[r.instance.task] = quotas.get(r.instance.task, 0) + 1
        return {"budget": ctx.budget, "quotas": quotas, "selected": len(records)}

    def after_stage(self, ctx: StageContext) -> None:
        """Called once the stage is trained (e.g. KPIG stores the learned IG)."""

    def objective(self, ctx: StageContext) -> "Objective | None":
        """An extra training objective for this stage (e.g. KPIG's IG hinge), or None."""
        return None


_REGISTRY: dict[str, type[ReplayStrategy]] = {}


def register(name: str, config: type[Strict] | None = None, section: str | None = None):
    """Register a strategy under `name`; `config`: its settings, the config section `replay.<section>`
    (default: `name`)."""
    def deco(cls: type[ReplayStrategy]) -> type[ReplayStrategy]:
        cls.name = name
        _REGISTRY[name] = cls
        register_method(name, section or name, config)
        return cls

    return deco


def strategy_names() -> list[str]:
    return sorted(_REGISTRY)


def get_strategy(name: str, cfg: "Config") -> ReplayStrategy:
    if name not in _REGISTRY:
        raise InputError(f"unknown replay strategy '{name}' (known: {', '.join(strategy_names())})", config_file(cfg),
                         "replay.strategy")
    return _REGISTRY[name](cfg)
