"""Batched greedy generation: left padding, KV cache, batches grouped by prompt length."""
from __future__ import annotations

import torch

from citune.data.types import Instance


def max_new_tokens_for(tokenizer, references: list[str], ceiling: int, slack: int = 4) -> int:
    """A task's generation bound: its longest reference in tokens plus slack, at most `ceiling`."""
    longest = max((len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in references), default=ceiling)
    return max(1, min(ceiling, longest + slack))


@torch.no_grad()
def generate(bundle, instances: list[Instance], max_new_tokens: int, batch_size: int, max_prompt_len: int,
             on_batch=None) -> list[str]:
    """Greedy completions of `instances`, in their order."""
    model, tok, enc = bundle.model, bundle.tokenizer, bundle.encoder
    prompts = [enc.prompt_ids(x.instruction, x.input, max_prompt_len) for x in instances]
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    outputs: list[str] = [""] * len(prompts)
    was_training = model.training
    model.eval()
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        width = max(len(prompts[i]) for i in idx)
        ids = torch.tensor([[tok.pad_token_id] * (width - len(prompts[i])) + prompts[i] for i in idx])
        mask = torch.tensor([[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in idx])
        out = model.generate(input_ids=ids.to(bundle.device), attention_mask=mask.to(bundle.device),
                             max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, use_cache=True)
        for row, i in enumerate(idx):
            outputs[i] = tok.decode(out[row, width:], skip_special_tokens=True).strip()
        if on_batch is not None:
            on_batch(len(idx))
    model.train(was_training)
    return outputs
