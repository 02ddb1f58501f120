"""Encoding examples and building batches that waste little compute on padding."""
from __future__ import annotations

import numpy as np
import torch

from citune.types import Objective, TrainExample


def encode_examples(encoder, examples: list[TrainExample], max_len: int, objective: Objective | None = None) -> list[dict]:
    rows = []
    for ex in examples:
        ids, labels = encoder.example(ex.shown_instruction, ex.instance.input, ex.target, max_len)
        row = {"input_ids": ids, "labels": labels}
        if objective is not None:
            row.update(objective.encode(ex, max_len))
        rows.append(row)
    return rows


def length_grouped_batches(lengths: list[int], batch_size: int, rng: np.random.Generator,
                           group: bool = True) -> list[list[int]]:
    """Shuffle, sort by length inside windows of 50 batches, cut into batches, shuffle the batches."""
    order = rng.permutation(len(lengths))
    if group:
        window = batch_size * 50
        order = np.concatenate([sorted(order[i:i + window], key=lambda k: -lengths[k])
                                for i in range(0, len(order), window)]) if len(order) else order
    batches = [list(map(int, order[i:i + batch_size])) for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))] if group else batches


def response_token_count(row: dict) -> int:
    """Tokens a row contributes to the response-only loss (labelled positions after the first)."""
    return sum(1 for t in row["labels"][1:] if t != -100)


def rank_slice(batch: list[int], rank: int, world: int) -> list[int]:
    """The rows of a global batch that process `rank` of `world` trains on: every world-th row.

    A length-sorted batch dealt out this way gives every rank rows of similar length. Each rank
    gets a slice of every global batch, so all ranks run the same number of steps (DDP needs it)
    and the optimisation equals the single-process one with the same global batch.
    """
    return batch[rank::world]


def padding_stats(lengths: list[int], batches: list[list[int]]) -> dict[str, float]:
    """Real and padded token counts of `batches` and the share of padding."""
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches if b)
    return {"tokens": real, "padded_tokens": padded, "padding_share": 1 - real / padded if padded else 0.0}


def _pad_value(key: str, pad_id: int) -> int:
    return -100 if key.endswith("labels") else pad_id


def collate(rows: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-pad every sequence key; build `<prefix>attention_mask` for each `<prefix>input_ids`."""
    batch: dict[str, torch.Tensor] = {}
    for key in rows[0]:
        seqs = [r[key] for r in rows]
        width = max(len(s) for s in seqs) or 1
        value = _pad_value(key, pad_id)
        batch[key] = torch.tensor([[value] * (width - len(s)) + list(s) for s in seqs], dtype=torch.long)
        if key.endswith("input_ids"):
            prefix = key[: -len("input_ids")]
            batch[prefix + "attention_mask"] = torch.tensor(
                [[0] * (width - len(s)) + [1] * len(s) for s in seqs], dtype=torch.long)
    return batch
