"""KPIG's IG-refined objective (METHODS.md 4.5): L = CE(y | x, I) + λ · mean max(0, m − IG(x, y, I)).

`encode` adds the example with its masked instruction Ĩ (`masked_input_ids`, `masked_labels`) for
the examples selected by `on` (all, current, replay) whose instruction has key parts; any other
example gets a one-token marker whose label is -100, and the hinge skips it. `loss` runs the full
batch and the selected masked rows through the model in one concatenated forward pass, so the
gradient flows through both. CE is the token mean over the batch's response tokens, as the trainer's
own loss; IG is per example, token-averaged: NLL(y | x, Ĩ) − NLL(y | x, I). Works with either
padding side (rows are re-aligned to the left), LoRA or full tuning, and gradient accumulation
(the trainer scales the returned loss). Under several processes the objective is `scoped`: CE is
divided by the global batch's response tokens and the hinge by its selected examples (`BatchScope`),
so that the ranks' average is the single-process loss (a rank's token share would weight the hinge's
mean wrongly).
"""
from __future__ import annotations

from typing import Callable, Literal, Mapping, Sequence

import torch

from citune.types import BatchScope, TrainExample
from citune.models.loss import left_align, response_logits, stack_left, token_nll
from citune.spans import Span, mask

Spans = Mapping[str, Sequence[Span]] | Callable[[str], Sequence[Span]]


class IGObjective:
    scoped = True  # the trainer passes the global batch's counts (engine/trainer.py rank_loss)

    def __init__(self, encoder, pad_id: int, spans: Spans, placeholder: str = "[...]", lam: float = 0.1,
                 margin: float = 1.0, on: Literal["all", "current", "replay"] = "all"):
        self.encoder = encoder
        self.pad_id = pad_id
        self._spans = spans
        self.placeholder = placeholder
        self.lam = lam
        self.margin = margin
        self.on = on

    def spans(self, instruction: str) -> Sequence[Span]:
        if callable(self._spans):
            return self._spans(instruction) or ()
        return self._spans.get(instruction, ())

    def selects(self, example: TrainExample) -> bool:
        return self.on == "all" or (self.on == "replay") == example.is_replay

    def encode(self, example: TrainExample, max_len: int) -> dict[str, list[int]]:
        instruction = example.shown_instruction
        spans = self.spans(instruction) if self.selects(example) else ()
        if not spans:
            return {"masked_input_ids": [self.pad_id], "masked_labels": [-100]}
        x = example.instance
        masked = mask(instruction, spans, self.placeholder)
        # Both prompts keep the same input tokens: the full example is encoded again with its twin.
        ids, labels = self.encoder.example(instruction, x.input, example.target, max_len, twin=masked)
        masked_ids, masked_labels = self.encoder.example(masked, x.input, example.target, max_len, twin=instruction)
        return {"input_ids": ids, "labels": labels, "masked_input_ids": masked_ids, "masked_labels": masked_labels}

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor],
             scope: BatchScope | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """CE + lambda * hinge over this batch (`scope` None), or this rank's share of the global batch's."""
        full = left_align(batch["input_ids"], batch["attention_mask"], batch["labels"])
        selected = (batch["masked_labels"] != -100).any(dim=1)
        parts = [full]
        if selected.any():
            parts.append(left_align(batch["masked_input_ids"][selected], batch["masked_attention_mask"][selected],
                                    batch["masked_labels"][selected]))
        ids, attn, labels = stack_left(parts, self.pad_id)
        logits, targets, valid = response_logits(model, ids, attn, labels)
        nll = token_nll(logits, targets, valid)
        b = full[0].shape[0]
        if scope is None:
            ce = nll[:b].sum() / valid[:b].sum().clamp(min=1)
        else:
            ce = scope.world * nll[:b].sum() / max(1, scope.tokens)
        if not selected.any():
            return ce, {"ce": float(ce.detach()), "hinge": 0.0, "ig_mean": 0.0, "ig_count": 0.0}
        per_example = nll.sum(1) / valid.sum(1).clamp(min=1)
        ig = per_example[b:] - per_example[:b][selected]
        hinges = torch.clamp(self.margin - ig, min=0)
        hinge = hinges.mean() if scope is None else scope.world * hinges.sum() / max(1, scope.rows["masked_labels"])
        total = ce + self.lam * hinge
        return total, {"ce": float(ce.detach()), "hinge": float(hinge.detach()),
                       "ig_mean": float(ig.detach().mean()), "ig_count": float(ig.numel())}
