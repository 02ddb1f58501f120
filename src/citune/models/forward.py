"""Model-side forward helpers shared by training, evaluation and replay scoring: positions of
left-padded rows, logits of a response's tail only, and prefill with a KV cache in which the prompts
that share an instruction prefix compute it once (see models/generate.py for the reasons)."""
from __future__ import annotations

import functools
import inspect
from typing import Hashable, Sequence

import torch


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that start at 0 on the first real token of a left-padded row."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


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


def shared_prefix_lens(prompts: Sequence[Sequence[int]], groups: Sequence[Hashable]) -> list[int]:
    """For each prompt, the length of the prefix common to every prompt of its group, keeping at
    least one token of its own (a group of one: all but its last token)."""
    common: dict[Hashable, int] = {}
    first: dict[Hashable, Sequence[int]] = {}
    for p, g in zip(prompts, groups):
        if g not in first:
            first[g], common[g] = p, len(p)
            continue
        ref, n = first[g], min(common[g], len(p))
        k = 0
        while k < n and ref[k] == p[k]:
            k += 1
        common[g] = k
    return [max(0, min(common[g], len(p) - 1)) for p, g in zip(prompts, groups)]


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (width - len(p)) + list(p) for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    return ids, mask


@functools.lru_cache(maxsize=None)
def _cache_kw_of(cls: type) -> str:
    """The keyword that `cls.forward` takes its KV cache by: `cache` (transformers >= 5.x, which
    warns on the old name) or `past_key_values` (older transformers, remote-code models)."""
    try:
        params = inspect.signature(cls.forward).parameters  # follows transformers' deprecation wrapper
    except (TypeError, ValueError):
        params = {}
    if "cache" in params:
        return "cache"
    if "past_key_values" in params:
        return "past_key_values"
    try:  # a forward taking only **kwargs: the name the installed transformers' outputs use
        from transformers.modeling_outputs import CausalLMOutputWithPast
    except ImportError:
        return "past_key_values"
    return "cache" if "cache" in getattr(CausalLMOutputWithPast, "__dataclass_fields__", {}) else "past_key_values"


def cache_kw(model) -> str:
    """The KV-cache keyword of `model`'s underlying transformers model (looked through PEFT, DDP and
    FSDP wrappers, whose own forward passes it on in **kwargs), decided once per model class."""
    try:
        from transformers import PreTrainedModel
    except ImportError:
        PreTrainedModel = ()
    inner = next((m for m in model.modules() if isinstance(m, PreTrainedModel)), model)
    return _cache_kw_of(type(inner))


def forward_cached(model, cache, kw: str, logits_to_keep=1, **kwargs):
    """`model`'s forward with the KV cache `cache` passed as `kw` (see `cache_kw`): (output, cache).
    The returned cache is the one the model gave back, or `cache` (updated in place) when it gave
    none (a Cache may be empty, hence `is None`, never truthiness)."""
    kwargs[kw] = cache
    try:
        out = model(**kwargs, logits_to_keep=logits_to_keep)
    except TypeError:  # a model without logits_to_keep: slice afterwards
        out = model(**kwargs)
        keep = int(logits_to_keep.numel()) if torch.is_tensor(logits_to_keep) else logits_to_keep
        out.logits = out.logits[:, -keep:]
    new = getattr(out, kw, None)  # the output's field of the same name: no deprecated alias read
    return out, (cache if new is None else new)


def new_cache(model):
    from transformers import DynamicCache

    try:
        return DynamicCache(config=getattr(model, "config", None))
    except TypeError:
        return DynamicCache()


def prefill(model, prompts, pad_id: int, device):
    """One forward over the left-padded prompts: (output, cache, attention mask, last positions)."""
    ids, mask = left_pad(prompts, pad_id, device)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    out, cache = forward_cached(model, new_cache(model), cache_kw(model), input_ids=ids, attention_mask=mask,
                          position_ids=pos, use_cache=True)
    return out, cache, mask, pos[:, -1]


def sharing_pays(prompts: Sequence[Sequence[int]], prefix_lens: Sequence[int], margin: float = 0.8) -> bool:
    """Whether computing each distinct prefix once beats one plain prefill, counted in padded token
    positions: each distinct prefix once plus every row's rest (both padded to their longest) against
    every row padded to the longest prompt. Prompts of different instructions share little and their
    heads and rests pad badly, so a batch pooled from many tasks is often cheaper in one pass."""
    if not prompts or min(prefix_lens) < 1:
        return False
    heads = {tuple(p[:n]) for p, n in zip(prompts, prefix_lens)}
    shared = (len(heads) * max(len(h) for h in heads)
              + len(prompts) * max(len(p) - n for p, n in zip(prompts, prefix_lens)))
    return shared < margin * len(prompts) * max(len(p) for p in prompts)


def prefill_shared(model, prompts, prefix_lens, pad_id: int, device, keep: int = 1):
    """What `prefill` gives (with logits for the last `keep` positions), computing each distinct
    prefix once: prefixes (one row each, left-padded), their cache rows copied to the prompts that
    share them, then the rest of every prompt (left-padded after its prefix; the padding between the
    two is masked out). A prompt's last `keep` tokens must lie after its prefix."""
    heads: dict[tuple, int] = {}
    row_head = [heads.setdefault(tuple(p[:n]), len(heads)) for p, n in zip(prompts, prefix_lens)]
    h_ids, h_mask = left_pad(list(heads), pad_id, device)
    kw = cache_kw(model)
    out, cache = forward_cached(model, new_cache(model), kw, input_ids=h_ids, attention_mask=h_mask,
                          position_ids=(h_mask.cumsum(-1) - 1).clamp(min=0), use_cache=True)
    sel = torch.tensor(row_head, device=device)
    cache.batch_select_indices(sel)
    s_ids, s_mask = left_pad([p[n:] for p, n in zip(prompts, prefix_lens)], pad_id, device)
    mask = torch.cat([h_mask[sel], s_mask], dim=1)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)[:, h_ids.shape[1]:]
    width = s_ids.shape[1]  # positions as a tensor: see tail_logits
    tail = 1 if keep == 1 else torch.arange(width - keep, width, device=device)
    out, cache = forward_cached(model, cache, kw, logits_to_keep=tail, input_ids=s_ids, attention_mask=mask, position_ids=pos,
                          use_cache=True)
    return out, cache, mask, pos[:, -1]
