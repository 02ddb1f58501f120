"""Response-only causal-LM loss that computes vocabulary logits only where the response lies."""
from __future__ import annotations

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
