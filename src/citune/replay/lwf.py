"""LwF (Li & Hoiem, 2017) in its LLM form, METHODS.md §5: the model of stage t-1 is the teacher on stage
t's own training data; loss = CE + lambda * T^2 * KL(p_teacher(./T) || p_student(./T)) over the response
positions (token mean, as CE).

One model stays in memory: before the stage trains, the model as it is (the stage t-1 model) scores every
training example once and keeps, per response position, its `top_k` tokens and their log-probabilities at
temperature T. The KL is taken over that top-k support with both distributions renormalised on it, so it
is exactly zero when student and teacher agree and equals the full KL when top_k covers the vocabulary.
Cost: one forward pass over the stage's examples and top_k (id, log-prob) pairs per response token.
The first stage has no earlier trained model and trains on CE alone.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import ConfigDict, Field

from citune.config import Strict
from citune.models.loss import left_batch, response_logits, token_nll
from citune.replay.base import DATA_PARALLEL, ReplayStrategy, StageContext, register
from citune.types import StageHooks, TrainExample


class LwFConfig(Strict):
    """LwF: distil the previous stage's model on the current task's data."""

    lam: float = Field(1.0, ge=0, alias="lambda", description="weight lambda of the distillation term")
    temperature: float = Field(2.0, gt=0, description="temperature T of both distributions (the term is scaled by T^2)")
    top_k: int = Field(20, gt=0, description="teacher tokens kept per response position")
    batch_size: int = Field(8, gt=0, description="examples per teacher forward pass")

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


Teacher = tuple[torch.Tensor, torch.Tensor]  # per example: token ids (n, k) and log-probs (n, k) at each response position


def topk_kl(student_logits: torch.Tensor, teacher_ids: torch.Tensor, teacher_logp: torch.Tensor,
            temperature: float) -> torch.Tensor:
    """KL(p_teacher || p_student) per position (n,), both at `temperature` and renormalised on the teacher's
    top-k tokens; `student_logits` (n, V), `teacher_ids` and `teacher_logp` (n, k)."""
    student = F.log_softmax(student_logits.float() / temperature, dim=-1).gather(-1, teacher_ids)
    student = student - torch.logsumexp(student, dim=-1, keepdim=True)
    teacher = teacher_logp - torch.logsumexp(teacher_logp, dim=-1, keepdim=True)
    return (teacher.exp() * (teacher - student)).sum(-1).clamp(min=0)  # < 0 only by float rounding


@torch.no_grad()
def teacher_topk(bundle, rows: list[tuple[list[int], list[int]]], temperature: float, k: int,
                 batch_size: int) -> list[Teacher]:
    """The model's top-k tokens and log-probs at `temperature` at every response position of each row."""
    model, pad_id = bundle.model, bundle.tokenizer.pad_token_id
    was_training = model.training
    model.eval()
    out: list[Teacher] = []
    try:
        for i in range(0, len(rows), batch_size):
            ids, mask, labels = (t.to(bundle.device) for t in left_batch(rows[i:i + batch_size], pad_id))
            logits, _, valid = response_logits(model, ids, mask, labels)
            logp = F.log_softmax(logits.float() / temperature, dim=-1)
            top = logp.topk(min(k, logp.shape[-1]), dim=-1)
            for r in range(ids.shape[0]):
                keep = valid[r]
                out.append((top.indices[r][keep].cpu(), top.values[r][keep].cpu()))
    finally:
        model.train(was_training)
    return out


def teacher_key(example: TrainExample) -> tuple[str, str, str]:
    """What the teacher's distributions depend on: the instance, the instruction shown, the target."""
    return example.instance.uid, example.shown_instruction, example.target


class LwFObjective:
    """CE + lambda * T^2 * mean KL over the batch's response tokens (rows carry `lwf_row`, the index of
    their teacher distributions)."""

    def __init__(self, teachers: dict[tuple[str, str, str], int], topk: list[Teacher], lam: float, temperature: float):
        self.rows, self.topk, self.lam, self.temperature = teachers, topk, lam, temperature

    def encode(self, example: TrainExample, max_len: int) -> dict[str, list[int]]:
        return {"lwf_row": [self.rows.get(teacher_key(example), -1)]}

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        logits, targets, valid = response_logits(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
        count = valid.sum().clamp(min=1)
        ce = token_nll(logits, targets, valid).sum() / count
        kl = logits.new_zeros((), dtype=torch.float32)
        for r, row in enumerate(batch["lwf_row"][:, 0].tolist()):
            if row < 0:
                continue
            ids, logp = self.topk[row]
            kl = kl + topk_kl(logits[r][valid[r]], ids.to(logits.device), logp.to(logits.device),
                              self.temperature).sum()
        distil = self.temperature ** 2 * kl / count
        return ce + self.lam * distil, {"ce": float(ce.detach()), "lwf_kl": float(distil.detach())}


@register("lwf", config=LwFConfig)
class LwF(ReplayStrategy):
    role = "training"
    paper = "LwF: Li & Hoiem, Learning without Forgetting, ECCV 2016 / TPAMI 2017"
    distributed = DATA_PARALLEL  # the teacher pass runs the unwrapped model on every rank: whole parameters

    def select(self, ctx: StageContext):
        return []

    def owns_objective(self) -> bool:
        return self.cfg.replay.lwf.lam != 0

    def hooks(self, ctx: StageContext, examples: list[TrainExample]) -> StageHooks:
        lcfg = self.cfg.replay.lwf
        if ctx.stage == 0 or ctx.model is None or lcfg.lam == 0:
            return StageHooks()
        first = {}
        for ex in examples:
            first.setdefault(teacher_key(ex), ex)
        keys, max_len = list(first), self.cfg.train.max_length
        rows = [ctx.model.encoder.example(ex.shown_instruction, ex.instance.input, ex.target, max_len)
                for ex in first.values()]
        topk = teacher_topk(ctx.model, rows, lcfg.temperature, lcfg.top_k, lcfg.batch_size)
        return StageHooks(objective=LwFObjective({k: i for i, k in enumerate(keys)}, topk, lcfg.lam, lcfg.temperature))
