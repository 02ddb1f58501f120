"""The data model: instances grouped into tasks, tasks ordered into a stream."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


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
