"""The shared types: instances grouped into tasks, tasks ordered into a stream; a training example
and the protocol of an extra training objective (below every floor that uses them)."""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Instance:
    """One (instruction, input, references) example.

    `outputs[0]` is the training target; all outputs are references at evaluation.
    `source` names the file or SuperNI task it came from; `uid` is stable across runs.
    """

    instruction: str
    input: str
    outputs: tuple[str, ...]
    task: str = ""
    source: str = ""
    uid: str = ""

    @property
    def output(self) -> str:
        return self.outputs[0]

    def to_record(self) -> dict:
        return {
            "uid": self.uid,
            "task": self.task,
            "source": self.source,
            "instruction": self.instruction,
            "input": self.input,
            "output": self.output,
            "outputs": list(self.outputs),
        }


def instance_uid(instruction: str, input: str, outputs: tuple[str, ...], source: str) -> str:
    h = hashlib.sha1("\x1f".join([source, instruction, input, *outputs]).encode("utf-8"))
    return h.hexdigest()[:16]


@dataclass
class Task:
    name: str
    train: list[Instance]
    test: list[Instance]
    validation: list[Instance] = field(default_factory=list)  # never trained on
    scorer: str = "rougeL"  # the primary score (citune.evaluation.scores)
    overlap_dropped: int = 0  # training instances removed because they are test instances too
    duplicates_dropped: int = 0  # exact duplicates dropped inside the task's sources

    def instructions(self) -> list[str]:
        """Unique instructions in first-seen order over the training split."""
        return list(dict.fromkeys(x.instruction for x in self.train))


@dataclass
class Stream:
    tasks: list[Task]
    heldout: list[Task] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def dropped(self) -> dict[str, dict[str, int]]:
        """Per task, the instances the build removed: exact duplicates in a source, training copies of test data."""
        return {t.name: {"duplicates_dropped": t.duplicates_dropped, "overlap_dropped": t.overlap_dropped}
                for t in self.tasks + self.heldout}


# ---------------------------------------------------------------- training examples and objectives
# An extra training objective plugged into the stage trainer (KPIG's IG hinge is one).
#
# The trainer encodes each example as `input_ids`/`labels`; an objective may add more
# sequences per example through `encode` (keys ending in `input_ids` are padded with the pad
# id, keys ending in `labels` with -100, and a matching `*attention_mask` is built), then
# computes the loss of a batch itself, so that both forward passes share one step.

@dataclass
class TrainExample:
    instance: Instance
    is_replay: bool = False
    instruction: str | None = None  # the instruction actually shown (a diversity variant), default the instance's
    output: str | None = None  # the reference trained on, default the instance's first

    @property
    def shown_instruction(self) -> str:
        return self.instruction if self.instruction is not None else self.instance.instruction

    @property
    def target(self) -> str:
        return self.output if self.output is not None else self.instance.output


def per_reference(examples: list[TrainExample], references: str) -> list[TrainExample]:
    """The examples as trained: each on its first reference (`first`), or one per reference (`all`)."""
    if references == "first":
        return list(examples)
    return [dataclasses.replace(ex, output=out) for ex in examples for out in ex.instance.outputs]


class Artifacts(Protocol):
    """Where a strategy keeps a run-level file of its own (a run directory; runs/rundir.py)."""

    def has_artifact(self, name: str) -> bool: ...

    def write_artifact(self, name: str, data: dict) -> None: ...


class Objective(Protocol):
    def encode(self, example: TrainExample, max_len: int) -> dict[str, list[int]]:
        """Extra per-example sequences (e.g. `masked_input_ids`, `masked_labels`)."""

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """The total loss of the batch (CE included) and scalars to log."""


@dataclass(frozen=True)
class BatchScope:
    """The global batch a rank's rows belong to, for an objective whose terms need global counts
    (`scoped = True`): its `loss(model, batch, scope)` returns this rank's share, world x (its sums / the
    global counts), so that the ranks' average is the single-process loss."""

    world: int
    tokens: int  # response tokens of the global batch (labelled positions after the first)
    rows: dict[str, int]  # per `*labels` key: rows of the global batch with a labelled position in it


class Penalty(Protocol):
    """A term on the parameters alone (EWC's quadratic anchor, O-LoRA's orthogonality), added to every
    step's loss; it holds the parameters it reads, so the trainer passes nothing."""

    def penalty(self) -> tuple[torch.Tensor, dict[str, float]]: ...


class GradientProjection(Protocol):
    """A constraint on each update's gradient against a reference gradient on `memory` (A-GEM): the
    trainer computes the reference (reduced over processes like the training gradient) and calls
    `project`, which changes `grads` in place and says whether it did."""

    memory: list[TrainExample]

    def project(self, grads: list[torch.Tensor], reference: list[torch.Tensor]) -> bool: ...


@dataclass
class StageHooks:
    """What the methods of a run add to one stage's training (engine/trainer.py applies them)."""

    objective: Objective | None = None  # the loss of a batch, CE included (KPIG's IG hinge, LwF's distillation)
    penalties: list[Penalty] = field(default_factory=list)
    projection: GradientProjection | None = None
