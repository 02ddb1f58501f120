"""An extra training objective plugged into the stage trainer (KPIG's IG hinge is one).

The trainer encodes each example as `input_ids`/`labels`; an objective may add more
sequences per example through `encode` (keys ending in `input_ids` are padded with the pad
id, keys ending in `labels` with -100, and a matching `*attention_mask` is built), then
computes the loss of a batch itself, so that both forward passes share one step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from citune.data.types import Instance


@dataclass
class TrainExample:
    instance: Instance
    is_replay: bool = False
    instruction: str | None = None  # the instruction actually shown (a diversity variant), default the instance's

    @property
    def shown_instruction(self) -> str:
        return self.instruction if self.instruction is not None else self.instance.instruction


class Objective(Protocol):
    def encode(self, example: TrainExample, max_len: int) -> dict[str, list[int]]:
        """Extra per-example sequences (e.g. `masked_input_ids`, `masked_labels`)."""

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """The total loss of the batch (CE included) and scalars to log."""
