"""Response-only causal-LM loss that computes vocabulary logits only where the response lies, and the
row helpers of the objectives that compare responses under other prompts or models (KPIG, LwF)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from citune.models.forward import tail_logits


def response_token_nll(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token NLL of the labelled (response) tokens, shape (B, L), and their mask.

    Rows are left-padded, so every response ends at the last column: only the last L+1
    positions need logits, L being the longest response in the batch.
    """
    targets = labels[:, 1:]
    has = (targets != -100)
    first = int(has.float().argmax(dim=1)[has.any(dim=1)].min()) if has.any() else targets.shape[1] - 1
    keep = targets.shape[1] - first
    logits = tail_logits(model, input_ids, attention_mask, keep + 1)[:, :-1, :]  # predicts targets[:, first:]
    tgt = targets[:, first:]
    mask = tgt != -100
    nll = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tgt.clamp(min=0).reshape(-1),
                          reduction="none").view(tgt.shape)
    return nll * mask, mask


def response_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean NLL over all response tokens of the batch."""
    nll, mask = response_token_nll(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
    return nll.sum() / mask.sum().clamp(min=1)


def left_align(ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Rows moved so that padding is on the left, whatever side it was on (a stable sort by the mask)."""
    order = torch.argsort(mask.long(), dim=1, stable=True)
    return ids.gather(1, order), mask.gather(1, order), labels.gather(1, order)


def pad_left(x: torch.Tensor, width: int, value: int) -> torch.Tensor:
    return F.pad(x, (width - x.shape[1], 0), value=value)


Rows = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (input ids, attention mask, labels)


def stack_left(parts: Sequence[Rows], pad_id: int) -> Rows:
    """Concatenate left-aligned (ids, mask, labels) batches of different widths into one batch."""
    width = max(p[0].shape[1] for p in parts)
    ids = torch.cat([pad_left(p[0], width, pad_id) for p in parts])
    mask = torch.cat([pad_left(p[1], width, 0) for p in parts])
    labels = torch.cat([pad_left(p[2], width, -100) for p in parts])
    return ids, mask, labels


def response_logits(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor,
                    labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits at the positions that predict labelled tokens of left-aligned rows.

    Returns (logits (N, K, V), targets (N, K), valid (N, K)); K spans from the earliest labelled
    token of the batch to the last column, so rows with the same response are position-aligned.
    """
    targets = labels[:, 1:]
    has = targets != -100
    first = int(has.float().argmax(dim=1)[has.any(dim=1)].min()) if has.any() else targets.shape[1] - 1
    keep = targets.shape[1] - first
    logits = tail_logits(model, ids, mask, keep + 1)
    tgt = targets[:, first:]
    return logits[:, :-1, :], tgt, tgt != -100


def token_nll(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-token NLL (N, K), zero where not valid."""
    nll = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.clamp(min=0).reshape(-1),
                          reduction="none").view(targets.shape)
    return torch.where(valid, nll, torch.zeros_like(nll))


def left_batch(rows: list[tuple[list[int], list[int]]], pad_id: int) -> Rows:
    """(input ids, labels) rows left-padded into one batch (ids, attention mask, labels)."""
    width = max(len(ids) for ids, _ in rows)
    ids = torch.tensor([[pad_id] * (width - len(i)) + i for i, _ in rows])
    mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i, _ in rows])
    labels = torch.tensor([[-100] * (width - len(lab)) + lab for _, lab in rows])
    return ids, mask, labels
