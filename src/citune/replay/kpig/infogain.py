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

from citune.models.forward import prefill_shared, shared_prefix_lens, sharing_pays, tail_logits

IGKind = Literal["nll", "entropy", "kl"]
# (instruction, masked instruction, input, output)
ScoreItem = tuple[str, str, str, str]


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


def _left_batch(rows: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, ...]:
    width = max(len(ids) for ids, _ in rows)
    ids = torch.tensor([[pad_id] * (width - len(i)) + i for i, _ in rows])
    mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i, _ in rows])
    labels = torch.tensor([[-100] * (width - len(lab)) + lab for _, lab in rows])
    return ids, mask, labels


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
        ids, mask, labels = (t.to(device) for t in stack_left([_left_batch(full, pad_id), _left_batch(masked, pad_id)],
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
