"""Batched generation (greedy, or sampled with a seeded generator): batches of prompts that share their instruction and have similar
lengths, a padding-free prefill, a KV cache, the shared instruction prefix computed once, and each
sequence dropped from its batch as soon as it ends (EOS or its task's token bound).

Prefill without padding (sdpa attention, the default): the batch's prompts are packed side by side
into a few rows of at least `forward.PACK_WIDTH` tokens, each distinct prefix (chat template head +
instruction) written once per row and followed by the rests of the prompts that share it, with a
block mask so that a rest sees its prefix and itself only; each prompt's keys and values are then
gathered into the usual left-padded cache, and only each prompt's last token reaches the LM head.
Two positions in three of a padded batch of SuperNI prompts are padding or a repeated prefix
(measured at the powered benchmark's shapes: 49,152 padded positions for 15,977 distinct tokens).
Without sdpa (eager or flash attention) the prefix is shared by two padded passes instead
(`forward.prefill_shared`: each distinct prefix once, its cache rows copied to the prompts that
share it, then the rest of every prompt) when that saves positions. Positions and masks are those of
the whole prompt either way, so the result is the greedy continuation of the full prompt
(`model.generate` gives the same tokens).

Pooling: a stage evaluates many tasks with few test instances each (SuperNI at CPU scale: 4 per
category), and one decoding step costs nearly as much for 4 rows as for 16 (it is bound by reading
the weights), so `pool_jobs` batches the prompts of all the tasks together, longest first, each row
keeping its task's token bound. A task with enough prompts fills whole batches of its own first:
mixed into other tasks' batches, its rows would lose their shared prefixes and wait for the longest
bound of the batch (measured: pooling everything took 1.13x the task-by-task time at 64 prompts per
task, and 0.46x at 4). The evaluation splits the work into `GenJob`s so that ranks of a
multi-process run can share them out without changing any batch's composition: a prediction is
then the same whatever the number of processes.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Hashable, NamedTuple, Sequence

import torch

from citune.models.forward import (PACK_WIDTH, cache_kw, forward_cached, left_pad, packs, prefill, prefill_packed,
                                  prefill_shared, shared_prefix_lens, sharing_pays)
from citune.models.lora_merge import lora_merged
from citune.types import Instance


def max_new_tokens_for(tokenizer, references: list[str], ceiling: int, slack: int = 4) -> int:
    """A task's generation bound: its longest reference in tokens plus slack, at most `ceiling`."""
    longest = max((len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in references), default=ceiling)
    return max(1, min(ceiling, longest + slack))


@dataclass
class GenJob:
    """One batch of prompts. Row i is prompt `index[i]` of task `keys[i]`, generates at most
    `max_new_tokens[i]` tokens, and shares its first `prefix_lens[i]` tokens with the other prompts
    of its instruction group."""

    keys: list[Hashable]
    index: list[int]
    prompts: list[list[int]]
    max_new_tokens: list[int]
    prefix_lens: list[int] | None = None

    @property
    def cost(self) -> int:
        """Rough work of the batch (token positions processed), for balancing ranks."""
        return len(self.prompts) * (max(len(p) for p in self.prompts) + max(self.max_new_tokens))


@dataclass
class GenRequest:
    """The prompts of one task to complete: its key, token bound and (optionally) each prompt's
    instruction group for prefix sharing."""

    key: Hashable
    prompts: list[list[int]]
    max_new_tokens: int
    groups: Sequence[Hashable] | None = None


class _Row(NamedTuple):
    key: Hashable
    index: int
    prompt: list[int]
    bound: int
    group: Hashable
    prefix: int | None


def _task_rows(r: GenRequest) -> list[_Row]:
    groups = list(r.groups) if r.groups is not None else list(range(len(r.prompts)))
    prefix = shared_prefix_lens(r.prompts, groups) if r.groups is not None else [None] * len(r.prompts)
    return [_Row(r.key, i, p, r.max_new_tokens, (r.key, g), n) for i, (p, g, n) in enumerate(zip(r.prompts, groups, prefix))]


def _by_group(rows: list[_Row]) -> list[_Row]:
    """Grouped by (task, instruction group), longest group first (ties: first seen), by decreasing
    length within a group."""
    longest: dict[Hashable, int] = {}
    first: dict[Hashable, int] = {}
    for k, row in enumerate(rows):
        longest[row.group] = max(longest.get(row.group, 0), len(row.prompt))
        first.setdefault(row.group, k)
    return sorted(rows, key=lambda row: (-longest[row.group], first[row.group], -len(row.prompt)))  # stable


def pool_jobs(requests: Sequence[GenRequest], batch_size: int) -> list[GenJob]:
    """The batches of all the requests' prompts: each task's prompts sorted so that prompts sharing a
    prefix sit together and a batch's prompts have similar lengths (`_by_group`); a task fills whole
    batches of its own first (one token bound, shared prefixes), and only what is left of every task
    (fewer than `batch_size` prompts each) is pooled, sorted the same way, into shared batches."""
    whole: list[list[_Row]] = []
    rest: list[_Row] = []
    for r in requests:
        rows = _by_group(_task_rows(r))
        cut = len(rows) - len(rows) % batch_size
        whole += [rows[s:s + batch_size] for s in range(0, cut, batch_size)]
        rest += rows[cut:]
    rest = _by_group(rest)
    share = all(r.groups is not None for r in requests)
    return [GenJob([x.key for x in b], [x.index for x in b], [x.prompt for x in b], [x.bound for x in b],
                   [x.prefix for x in b] if share else None)
            for b in whole + [rest[s:s + batch_size] for s in range(0, len(rest), batch_size)]]


def make_jobs(key: Hashable, prompts: list[list[int]], max_new_tokens: int, batch_size: int,
              groups: Sequence[Hashable] | None = None) -> list[GenJob]:
    """The batches of one task's prompts (see `pool_jobs`)."""
    return pool_jobs([GenRequest(key, prompts, max_new_tokens, groups)], batch_size)


def share_jobs(jobs: Sequence[GenJob], world: int) -> list[list[int]]:
    """Job numbers per rank: longest job first to the least-loaded rank (deterministic on every rank)."""
    loads, out = [0] * world, [[] for _ in range(world)]
    for j in sorted(range(len(jobs)), key=lambda j: (-jobs[j].cost, j)):
        r = min(range(world), key=lambda r: (loads[r], r))
        out[r].append(j)
        loads[r] += jobs[j].cost
    return [sorted(x) for x in out]


@torch.no_grad()
def greedy_batch(model, prompts: Sequence[Sequence[int]], max_new_tokens: int | Sequence[int], pad_id: int,
                 eos_ids: Sequence[int], device=None, prefix_lens: Sequence[int] | None = None,
                 temperature: float = 0.0, generator: torch.Generator | None = None) -> list[list[int]]:
    """Greedy continuations (token ids, EOS excluded) of `prompts` in one batch; with `temperature` > 0,
    each token is drawn from the softmax at that temperature instead (from `generator`, for repeatable draws).

    Prefill computes vocabulary logits for the last position only (and each shared prefix once when
    `prefix_lens` is given); decoding feeds one token per live row through the KV cache, and a row
    that emits EOS (or reaches its bound: `max_new_tokens`, one for all or one per row) leaves the
    batch at once: its cache rows are dropped, so finished sequences cost nothing more.
    """
    device = device if device is not None else next(model.parameters()).device
    bounds = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    eos = torch.tensor(sorted(set(eos_ids)), device=device)
    kw = cache_kw(model)
    if len(prompts) > 1 and packs(model, max(PACK_WIDTH, max(map(len, prompts)))):  # no padding, prefixes once a row
        out, cache, mask, last = prefill_packed(model, prompts, prefix_lens or [0] * len(prompts), pad_id, device)
    elif prefix_lens is not None and len(prompts) > 1 and sharing_pays(prompts, prefix_lens):
        out, cache, mask, last = prefill_shared(model, prompts, prefix_lens, pad_id, device)
    else:  # nothing shared in this batch: one plain prefill
        out, cache, mask, last = prefill(model, prompts, pad_id, device)
    results: list[list[int]] = [[] for _ in prompts]
    alive = torch.arange(len(prompts), device=device)
    bound = torch.tensor(bounds, device=device)
    for step in range(max(bounds)):
        nxt = next_tokens(out.logits[:, -1, :], temperature, generator)
        done = torch.isin(nxt, eos) | (bound[alive] <= step + 1)
        for row, tok in zip(alive.tolist(), nxt.tolist()):
            results[row].append(tok)
        if bool(done.all()):
            break
        if bool(done.any()):
            keep = (~done).nonzero(as_tuple=True)[0]
            cache.batch_select_indices(keep)
            alive, nxt, mask, last = alive[keep], nxt[keep], mask[keep], last[keep]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
        last = last + 1
        out, cache = forward_cached(model, cache, kw, input_ids=nxt[:, None], attention_mask=mask,
                              position_ids=last[:, None], use_cache=True)
    eos_set = set(int(e) for e in eos.tolist())
    return [r[:-1] if r and r[-1] in eos_set else r for r in results]


def next_tokens(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    if temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(logits.device)


@torch.no_grad()
def hf_generate_batch(model, prompts: Sequence[Sequence[int]], max_new_tokens: int | Sequence[int], pad_id: int,
                      eos_ids: Sequence[int], device=None) -> list[list[int]]:
    """The same through `model.generate` (the reference the benchmark compares with); per-row
    bounds are applied by cutting each row after the batch ran to the largest."""
    device = device if device is not None else next(model.parameters()).device
    bounds = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    ids, mask = left_pad(prompts, pad_id, device)
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max(bounds), do_sample=False,
                         num_beams=1, pad_token_id=pad_id, eos_token_id=list(eos_ids), use_cache=True)
    eos_set = set(eos_ids)
    res = []
    for row, n in zip(out[:, ids.shape[1]:].tolist(), bounds):
        row = row[:n]
        cut = next((k for k, t in enumerate(row) if t in eos_set), len(row))
        res.append(row[:cut])
    return res


class Completion(NamedTuple):
    text: str
    hit_bound: bool  # stopped by its token bound, not by an EOS token


def stop_ids(bundle) -> list[int]:
    """Every EOS id of the model: the tokenizer's and those of the model's generation config (chat
    models end a turn with a token of their own, often listed only there)."""
    ids = {bundle.tokenizer.eos_token_id}
    config = getattr(bundle.model, "generation_config", None)
    extra = getattr(config, "eos_token_id", None)
    ids.update(extra if isinstance(extra, (list, tuple)) else [extra])
    return sorted(int(i) for i in ids if i is not None)


def run_jobs(bundle, jobs: Sequence[GenJob], on_job: Callable[[GenJob], None] | None = None,
             method: str = "loop", temperature: float = 0.0, generator: torch.Generator | None = None
             ) -> list[list[Completion]]:
    """Decoded completions of each job's prompts (in the job's order). `method`: "loop" (citune's
    decoding, sharing prefixes when the jobs know them, LoRA adapters folded into their weights
    meanwhile (`lora_merged`); sampled at `temperature` > 0) or "hf" (`model.generate` on each batch,
    greedy, on the model as it is)."""
    model, tok = bundle.model, bundle.tokenizer
    eos = stop_ids(bundle)
    was_training = model.training
    model.eval()
    try:
        out = []
        with lora_merged(model) if method == "loop" else nullcontext():
            for job in jobs:
                args = (model, job.prompts, job.max_new_tokens, tok.pad_token_id, eos, bundle.device)
                seqs = (greedy_batch(*args, prefix_lens=job.prefix_lens, temperature=temperature, generator=generator)
                        if method == "loop" else hf_generate_batch(*args))
                out.append([Completion(tok.decode(s, skip_special_tokens=True).strip(), len(s) >= bound)
                            for s, bound in zip(seqs, job.max_new_tokens)])
                if on_job is not None:
                    on_job(job)
        return out
    finally:
        model.train(was_training)


def generate(bundle, instances: list[Instance], max_new_tokens: int, batch_size: int, max_prompt_len: int,
             on_batch=None, method: str = "loop") -> list[str]:
    """Greedy completions of `instances`, in their order (all on this process)."""
    enc = bundle.encoder
    prompts = [enc.prompt_ids(x.instruction, x.input, max_prompt_len) for x in instances]
    jobs = make_jobs(None, prompts, max_new_tokens, batch_size, [x.instruction for x in instances])
    outputs: list[str] = [""] * len(prompts)
    done = run_jobs(bundle, jobs, (lambda j: on_batch(len(j.index))) if on_batch else None, method)
    for job, completions in zip(jobs, done):
        for i, c in zip(job.index, completions):
            outputs[i] = c.text
    return outputs
