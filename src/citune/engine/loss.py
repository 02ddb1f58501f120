"""Response-only causal-LM loss that computes vocabulary logits only where the response lies."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from citune.engine.batching import position_ids


def tail_logits(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, keep: int) -> torch.Tensor:
    """Logits of the last `keep` positions of left-padded rows, shape (B, keep, V).

    `logits_to_keep` is given as a tensor of positions: the model then gathers a contiguous
    (B, keep, d) slice of hidden states, and the LM head runs as one matrix multiply (an integer
    `logits_to_keep` slices a strided view, which PyTorch multiplies as a batched product against
    a broadcast copy of the whole vocabulary matrix: several times slower on CPU).
    """
    width = input_ids.shape[1]
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask),
                  use_cache=False)
    try:
        return model(**kwargs, logits_to_keep=torch.arange(width - keep, width, device=input_ids.device)).logits
    except TypeError:  # a model without logits_to_keep
        return model(**kwargs).logits[:, -keep:]


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
