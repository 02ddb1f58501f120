"""The method interface: a replay strategy picks R_t from the stored data of tasks < t; a training method
(EWC, LwF, A-GEM, O-LoRA, ...) changes how a stage trains (`hooks`: an objective, penalties, a gradient
projection; `setup_model`: adapters). `replay.strategy: inscl+ewc` combines one replay strategy with
training methods (replay/compose.py).

A new method is one module (or package) with a `ReplayStrategy` subclass decorated by
`@register("name")`, or `@register("name", config=ItsConfig)` to add the section `replay.name`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from citune.config import Strict, register_method
from citune.seeds import stable_seed
from citune.types import Instance, StageHooks, Stream, Task, TrainExample

if TYPE_CHECKING:
    from citune.config import Config
    import torch

    from citune.types import Artifacts, Objective
    from citune.models.loading import ModelBundle


@dataclass
class ReplayRecord:
    """One replayed instance and why it was chosen (quota, distance, InsInfo, IG, ...)."""

    instance: Instance
    info: dict[str, Any] = field(default_factory=dict)

    def to_record(self, strategy: str, seed: int, draw_seed: int | None = None) -> dict:
        """The replay.jsonl row: the instance, the strategy, the run's seed and the seed of the generator
        that drew it in its stage (`np.random.default_rng(draw_seed)`), then the strategy's reasons."""
        drawn = {} if draw_seed is None else {"draw_seed": draw_seed}
        return {**self.instance.to_record(), "strategy": strategy, "seed": seed, **drawn, **self.info}


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
        return np.random.default_rng(self.draw_seed(*keys))

    def draw_seed(self, *keys: Any) -> int:
        """The seed of `rng(*keys)`; a strategy draws a task's replay from `rng(<its name>, <task>)`."""
        return stable_seed(self.seed, self.stage, *keys)


class ReplayStrategy:
    name: ClassVar[str] = ""
    role: ClassVar[str] = "replay"  # "training": a method that changes how a stage trains, not what
    paper: ClassVar[str] = ""  # where the method comes from, as the report names it
    needs_model: ClassVar[bool] = False  # True when selection uses the trained model
    distributed: ClassVar[tuple[str, ...] | None] = None  # Accelerate distributed types it runs under; None: all
    adapters: ClassVar[bool] = False  # manages the LoRA adapters (one per task)
    projects: ClassVar[bool] = False  # adjusts each update's gradient (a GradientProjection)

    def __init__(self, cfg: "Config"):
        self.cfg = cfg

    @property
    def parts(self) -> list["ReplayStrategy"]:
        """The methods this strategy is made of (itself, or a combination's members)."""
        return [self]

    @property
    def replay_name(self) -> str:
        """The name of the part that draws the replay (its generators are `ctx.rng(replay_name, task)`)."""
        return self.name

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
        """Called once the stage is trained (e.g. KPIG stores the learned IG, EWC its Fisher)."""

    def objective(self, ctx: StageContext) -> "Objective | None":
        """An extra training objective for this stage (e.g. KPIG's IG hinge), or None."""
        return None

    def owns_objective(self) -> bool:
        """Whether `hooks` replaces the batch loss (two such methods cannot be combined)."""
        return False

    def hooks(self, ctx: StageContext, examples: list[TrainExample]) -> StageHooks:
        """What this method adds to the training of stage `ctx.stage` on `examples` (computed before it)."""
        return StageHooks(objective=self.objective(ctx))

    def check(self) -> None:
        """Raise InputError when the config cannot run this method (checked before anything is written)."""

    def setup_model(self, bundle: "ModelBundle", stream: Stream) -> None:
        """Change the model once, before the first stage and before a checkpoint is restored into it."""

    def final_model(self, bundle: "ModelBundle", stream: Stream) -> None:
        """Set the model up as the last stage evaluates it (O-LoRA: every adapter active), for export."""

    def state_tensors(self) -> dict[str, "torch.Tensor"]:
        """Tensors the method carries across stages (saved with each stage's checkpoint, restored on resume)."""
        return {}

    def load_state_tensors(self, tensors: dict[str, "torch.Tensor"]) -> None:
        """Restore what `state_tensors` returned after the stage a resumed run starts from."""

    def stage_facts(self) -> dict[str, Any]:
        """What the method did in the stage just trained, for the manifest entry (projections, norms...)."""
        return {}


DATA_PARALLEL = ("NO", "MULTI_CPU", "MULTI_GPU")  # one process, or DDP: every rank holds whole parameters

_REGISTRY: dict[str, type[ReplayStrategy]] = {}


def register(name: str, config: type[Strict] | None = None, section: str | None = None):
    """Register a strategy under `name`; `config`: its settings, the config section `replay.<section>`
    (default: `name`)."""
    def deco(cls: type[ReplayStrategy]) -> type[ReplayStrategy]:
        cls.name = name
        _REGISTRY[name] = cls
        register_method(name, section or name, config, cls.role)
        return cls

    return deco


def strategy_names() -> list[str]:
    return sorted(_REGISTRY)


def strategy_class(name: str) -> type[ReplayStrategy] | None:
    """The class registered as `name` (one method, not a combination), or None."""
    return _REGISTRY.get(name)
