"""Model-side forward helpers shared by training, evaluation and replay scoring: positions of
left-padded rows, logits of a response's tail only, and prefill with a KV cache in which the prompts
that share an instruction prefix compute it once (see models/generate.py for the reasons)."""
from __future__ import annotations

import functools
import inspect
import math
from typing import Hashable, NamedTuple, Sequence

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


class _PackedRows(NamedTuple):
    """The padding-free layout of a batch of prompts: `ids`, `pos` and the segment ids (`seg`: a
    token's own segment; `own`: the head segment its tokens may also see) of each packed row, and
    for each prompt its row and the columns of its tokens (head, then its own rest)."""

    ids: list[list[int]]
    pos: list[list[int]]
    seg: list[list[int]]
    own: list[list[int]]
    row_of: list[int]
    cols_of: list[list[int]]


def pack_prompts(prompts: Sequence[Sequence[int]], prefix_lens: Sequence[int], width: int) -> _PackedRows:
    """Prompts packed into rows of `width` tokens: each distinct prefix (head) is written once per row
    that holds prompts sharing it, each prompt's rest follows in the same row, and rows are filled
    first-fit (prompts in the given order, which keeps a head's prompts together)."""
    rows = _PackedRows([], [], [], [], [], [])
    where: dict[tuple, tuple[int, list[int]]] = {}  # head -> (row, its columns) of the row filled last
    segments = 0

    def place(row: int, tokens: Sequence[int], start_pos: int, head_seg: int | None) -> tuple[list[int], int]:
        nonlocal segments
        segments += 1
        col = len(rows.ids[row])
        rows.ids[row].extend(tokens)
        rows.pos[row].extend(range(start_pos, start_pos + len(tokens)))
        rows.seg[row].extend([segments] * len(tokens))
        rows.own[row].extend([segments if head_seg is None else head_seg] * len(tokens))
        return list(range(col, col + len(tokens))), segments

    head_seg: dict[tuple[tuple, int], int] = {}
    for p, n in zip(prompts, prefix_lens):
        head, rest = tuple(p[:n]), list(p[n:])
        row, head_cols = where.get(head, (None, []))
        if row is None or width - len(rows.ids[row]) < len(rest):
            need = len(head) + len(rest)
            row = next((r for r in range(len(rows.ids)) if width - len(rows.ids[r]) >= need), None)
            if row is None:
                row = len(rows.ids)
                for part in (rows.ids, rows.pos, rows.seg, rows.own):
                    part.append([])
            head_cols, seg = place(row, head, 0, None) if head else ([], 0)
            head_seg[(head, row)] = seg
            where[head] = (row, head_cols)
        rest_cols, _ = place(row, rest, len(head), head_seg[(head, row)] if head else None)
        rows.row_of.append(row)
        rows.cols_of.append(head_cols + rest_cols)
    return rows


def narrowest_width(prompts: Sequence[Sequence[int]], prefix_lens: Sequence[int], width: int, step: int = 8) -> int:
    """The narrowest row width (a multiple of `step`, at least the longest prompt) at which
    `pack_prompts` needs no more rows than at `width`: the same number of rows, less padding. A
    batch's last row is rarely full, and every row costs its width in the projections and width² in
    attention; balancing the rows cut SuperNI's packed positions by 10 % at the powered benchmark's
    shapes (20,480 to 18,400)."""
    longest = max(len(p) for p in prompts)
    full = max(width, longest)
    rows = pack_prompts(prompts, prefix_lens, full)
    least = max(longest, math.ceil(sum(len(r) for r in rows.ids) / len(rows.ids)))  # narrower cannot hold them

    def fits(w: int) -> bool:
        return len(pack_prompts(prompts, prefix_lens, w).ids) <= len(rows.ids)

    return next((w for w in range(math.ceil(least / step) * step, full, step) if fits(w)), full)


def packed_mask(rows: _PackedRows, width: int, device) -> torch.Tensor:
    """The (rows, 1, width, width) boolean attention mask of packed rows: a token sees the earlier
    tokens of its own segment and of its head; padding sees itself only."""
    seg = torch.full((len(rows.ids), width), 0, dtype=torch.long)
    own = torch.full_like(seg, 0)
    for r, (s, o) in enumerate(zip(rows.seg, rows.own)):
        seg[r, :len(s)], own[r, :len(o)] = torch.tensor(s), torch.tensor(o)
        seg[r, len(s):] = own[r, len(s):] = -torch.arange(1, width - len(s) + 1)  # each pad its own segment
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    sees = (seg[:, None, :] == seg[:, :, None]) | (seg[:, None, :] == own[:, :, None])
    return (sees & causal)[:, None].to(device)


def cache_tensors(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each layer's (keys, values) of a DynamicCache (transformers 5 layers, or the older lists)."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache))


# Packed rows are at least this wide: several short prompts (or one prefix and the rests of the
# prompts that share it) fill a row. Attention over a row costs width² however little of it the
# mask keeps, so wider rows trade padding for attention: measured on SuperNI's 192-token prompts
# (batches of 32, SmolLM2-135M, 2 CPU cores), prefill took 0.68x the padded time at the prompts'
# own width, 0.50x at 2x, 0.45x at 3x and 0.49x at 4x.
PACK_WIDTH = 512


def packs(model, width: int = PACK_WIDTH) -> bool:
    """Whether `model` takes packed rows of `width` tokens: a transformers model (remote code may read
    the mask as 2-D) with sdpa attention (eager attention adds its mask as floats, flash attention
    takes none), no ALiBi (built from a 2-D mask), and every cache layer a full-attention one or a
    sliding window wider than the row (a narrower one keeps only the row's last tokens, and its
    window is not in the block mask; conv and linear-attention layers keep no keys and would carry
    their state from one prompt of a row to the next)."""
    from transformers import PreTrainedModel
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    config = getattr(model, "config", None)
    inner = next((m for m in model.modules() if isinstance(m, PreTrainedModel)), None)
    if (inner is None or not type(inner).__module__.startswith("transformers.")
            or getattr(config, "_attn_implementation", None) != "sdpa" or getattr(config, "alibi", False)):
        return False
    return all(type(layer) is DynamicLayer
               or (type(layer) is DynamicSlidingWindowLayer and width < layer.sliding_window)
               for layer in getattr(new_cache(model), "layers", [None]))


def prefill_packed(model, prompts, prefix_lens, pad_id: int, device, width: int = PACK_WIDTH):
    """What `prefill` gives, without padding: the prompts packed into as many rows as `width` tokens (or
    the longest prompt's) need, each row narrowed as far as that allows (`narrowest_width`;
    `pack_prompts`: a shared prefix computed once per row, the rests side by side, a block mask
    keeping them apart), then each prompt's keys and values gathered into the usual left-padded
    cache for decoding. Only the last token of each prompt reaches the LM head. Needs an
    attention implementation that takes a 4-D mask (sdpa, eager)."""
    longest = max(len(p) for p in prompts)
    width = narrowest_width(prompts, prefix_lens, width)
    rows = pack_prompts(prompts, prefix_lens, width)
    ids = torch.full((len(rows.ids), width), pad_id, dtype=torch.long)
    pos = torch.zeros_like(ids)
    for r, (i, q) in enumerate(zip(rows.ids, rows.pos)):
        ids[r, :len(i)], pos[r, :len(q)] = torch.tensor(i), torch.tensor(q)
    row_of = torch.tensor(rows.row_of)
    last_col = torch.tensor([cols[-1] for cols in rows.cols_of])

    def last_tokens_only(_module, args):  # (1, prompts, d): the LM head runs on these rows alone
        return (args[0][row_of.to(args[0].device), last_col.to(args[0].device)][None],)

    hook = model.get_output_embeddings().register_forward_pre_hook(last_tokens_only)
    try:
        out, cache = forward_cached(model, new_cache(model), cache_kw(model), logits_to_keep=0,
                                    input_ids=ids.to(device), position_ids=pos.to(device),
                                    attention_mask=packed_mask(rows, width, device), use_cache=True)
    finally:
        hook.remove()
    lens = [len(c) for c in rows.cols_of]
    cols = torch.tensor([[0] * (longest - n) + c for c, n in zip(rows.cols_of, lens)], device=device)
    mask = torch.tensor([[0] * (longest - n) + [1] * n for n in lens], device=device)
    gathered = new_cache(model)
    rix = row_of.to(device)[:, None]
    for layer, (k, v) in enumerate(cache_tensors(cache)):
        gathered.update(k[rix, :, cols].transpose(1, 2).contiguous(), v[rix, :, cols].transpose(1, 2).contiguous(),
                        layer)
    if out.logits.shape[:2] != (1, len(prompts)):  # the LM head was not called as the output embeddings
        raise RuntimeError(f"packed prefill: logits of shape {tuple(out.logits.shape)}, not one per prompt")
    out.logits = out.logits.transpose(0, 1)  # (prompts, 1, V), as `prefill` gives
    return out, gathered, mask, torch.tensor(lens, device=device) - 1
