"""Information gain of the key parts (KPIG, METHODS.md 4.3), teacher-forced on the gold response:

    IG(x, y, I) = NLL(y | x, Ĩ) − NLL(y | x, I)      (token-averaged over the response tokens)

`entropy`: mean over response positions of H(p(·| x, Ĩ)) − H(p(·| x, I)), the entropy the key parts
remove; `kl`: mean over response positions of KL(p(·| x, I) ‖ p(·| x, Ĩ)). The full and masked
prompts of a batch go through the model together, their shared prefixes computed once; vocabulary
logits are computed only over the response tail. The helpers here are shared with the IG training
objective.
"""
from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F

from citune.models.forward import prefill_shared, shared_prefix_lens, sharing_pays
from citune.models.loss import left_batch, response_logits, stack_left, token_nll

IGKind = Literal["nll", "entropy", "kl"]
# (instruction, masked instruction, input, output)
ScoreItem = tuple[str, str, str, str]


def _position_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    return torch.where(valid, values, torch.zeros_like(values)).sum(1) / valid.sum(1).clamp(min=1)


def gain(logits_full: torch.Tensor, logits_masked: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor,
         kind: IGKind = "nll") -> torch.Tensor:
    """Per-example IG from position-aligned logits of the full and masked prompts."""
    if kind == "nll":
        return _position_mean(token_nll(logits_masked, targets, valid) - token_nll(logits_full, targets, valid), valid)
    lp_full = F.log_softmax(logits_full.float(), dim=-1)
    lp_masked = F.log_softmax(logits_masked.float(), dim=-1)
    if kind == "entropy":
        h_full = -(lp_full.exp() * lp_full).sum(-1)
        h_masked = -(lp_masked.exp() * lp_masked).sum(-1)
        return _position_mean(h_masked - h_full, valid)
    if kind == "kl":
        kl = (lp_full.exp() * (lp_full - lp_masked)).sum(-1).clamp(min=0)  # < 0 only by float rounding
        return _position_mean(kl, valid)
    raise ValueError(f"unknown IG kind '{kind}' (nll, entropy, kl)")


def _encode(encoder, items: Sequence[ScoreItem], masked: bool, max_len: int) -> list[tuple[list[int], list[int]]]:
    """Each item's full or masked example, its input cut so that both prompts keep the same input tokens."""
    return [encoder.example(m, x, y, max_len, twin=ins) if masked else encoder.example(ins, x, y, max_len, twin=m)
            for ins, m, x, y in items]


def _tails(rows: list[tuple[list[int], list[int]]], k: int) -> torch.Tensor:
    """The last k labels of every row, left-padded with -100."""
    return torch.tensor([[-100] * (k - len(lab[-k:])) + lab[-k:] for _, lab in rows])


def _batch_gain(model, encoder, pad_id: int, items: Sequence[ScoreItem], kind: IGKind, max_len: int,
                device) -> list[float]:
    """IG of a batch of items: the full and masked prompts go through the model together. A full prompt
    and its masked twin start with the same tokens (chat-template head, the instruction up to its first
    key part), and so do the prompts of items with one instruction: each distinct prefix is computed
    once, as in evaluation (`prefill_shared`), and only the rest of every prompt runs per row."""
    # lazy: evaluation imports replay

    full, masked = _encode(encoder, items, False, max_len), _encode(encoder, items, True, max_len)
    rows, n = full + masked, len(items)
    resp = [sum(t != -100 for t in lab) for _, lab in rows]
    k = max(resp)
    twins = shared_prefix_lens([ids for ids, _ in rows], list(range(n)) * 2)  # each item's full and masked prompt
    prefix = [min(p, len(ids) - r - 1) for p, (ids, _), r in zip(twins, rows, resp)]  # responses stay after it
    if sharing_pays([ids for ids, _ in rows], prefix):
        out = prefill_shared(model, [ids for ids, _ in rows], prefix, pad_id, device, keep=k + 1)[0]
        logits, targets = out.logits[:, :-1], _tails(rows, k).to(device)
        valid = targets != -100
    else:  # too little shared to pay for two passes: one plain forward
        ids, mask, labels = (t.to(device) for t in stack_left([left_batch(full, pad_id), left_batch(masked, pad_id)],
                                                              pad_id))
        logits, targets, valid = response_logits(model, ids, mask, labels)
    if not torch.equal(valid[:n], valid[n:]):
        raise RuntimeError("full and masked prompts ended with different responses")
    return gain(logits[:n], logits[n:], targets[:n], valid[:n], kind).tolist()


def information_gain(bundle, items: Sequence[ScoreItem], kind: IGKind = "nll", batch_size: int = 8,
                     max_len: int = 256) -> list[float]:
    """IG of each (instruction, masked instruction, input, output) item under `bundle.model`.

    No gradients, eval mode (the previous mode is restored). Items are batched by length.
    """
    if not items:
        return []
    model, encoder = bundle.model, bundle.encoder
    pad_id = bundle.tokenizer.pad_token_id
    order = sorted(range(len(items)), key=lambda i: len(items[i][0]) + len(items[i][2]) + len(items[i][3]))
    out = [0.0] * len(items)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                idx = order[start: start + batch_size]
                values = _batch_gain(model, encoder, pad_id, [items[i] for i in idx], kind, max_len, bundle.device)
                for i, v in zip(idx, values):
                    out[i] = float(v)
    finally:
        model.train(was_training)
    return out
