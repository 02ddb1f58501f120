"""EWC (Kirkpatrick et al. 2017) in its online form (Schwarz et al. 2018), METHODS.md §5.

After stage k: the diagonal empirical Fisher F_k of the trainable parameters, the mean squared gradient
of the response loss (token mean, as the training loss) over `fisher_samples` training instances of task
k, one instance at a time; F <- gamma * F + F_k; anchors theta* = the parameters after stage k. Later
stages add (lambda / 2) * sum_i F_i (theta_i - theta*_i)^2 to every step's loss. Fisher and anchors are
the method's state tensors: saved with each stage's checkpoint, restored on --resume.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from pydantic import ConfigDict, Field

from citune.config import Strict
from citune.models.loss import response_loss
from citune.replay.base import DATA_PARALLEL, ReplayStrategy, StageContext, register
from citune.types import Instance, StageHooks, TrainExample


class EWCConfig(Strict):
    """EWC: a quadratic anchor on the parameters, weighted by their Fisher information."""

    lam: float = Field(5000.0, ge=0, alias="lambda", description="weight lambda of the penalty (lambda / 2) * "
                       "sum F (theta - theta*)^2")
    gamma: float = Field(1.0, ge=0, le=1, description="online decay: F <- gamma * F + F_k after each stage")
    fisher_samples: int = Field(32, gt=0, description="training instances of the task just learned whose "
                                "squared gradients are averaged into its Fisher")

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


def diagonal_fisher(params: dict[str, torch.Tensor], losses: Iterable[Callable[[], torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The mean over `losses` (one per sample) of each parameter's squared gradient, in float32."""
    names = list(params)
    fisher = {n: torch.zeros_like(params[n], dtype=torch.float32) for n in names}
    count = 0
    for loss_of in losses:
        grads = torch.autograd.grad(loss_of(), [params[n] for n in names], allow_unused=True)
        for n, g in zip(names, grads):
            if g is not None:
                fisher[n] += g.detach().float() ** 2
        count += 1
    return {n: f / max(count, 1) for n, f in fisher.items()}


class EWCPenalty:
    """(lambda / 2) * sum F (theta - theta*)^2 over the anchored parameters."""

    def __init__(self, params: list[torch.Tensor], fisher: list[torch.Tensor], anchor: list[torch.Tensor], lam: float):
        self.params, self.lam = params, lam
        self.fisher = [f.to(p.device) for f, p in zip(fisher, params)]
        self.anchor = [a.to(p.device, p.dtype) for a, p in zip(anchor, params)]

    def penalty(self) -> tuple[torch.Tensor, dict[str, float]]:
        total = sum((f * (p.float() - a.float()) ** 2).sum() for p, f, a in zip(self.params, self.fisher, self.anchor))
        value = 0.5 * self.lam * total
        return value, {"ewc": float(value.detach())}


def trainable(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


@register("ewc", config=EWCConfig)
class EWC(ReplayStrategy):
    role = "training"
    paper = "EWC: Kirkpatrick et al., PNAS 2017; online form: Schwarz et al., ICML 2018"
    distributed = DATA_PARALLEL

    def __init__(self, cfg):
        super().__init__(cfg)
        self.ecfg = cfg.replay.ewc
        self.fisher: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}
        self._facts: dict = {}

    def select(self, ctx: StageContext):
        return []

    def hooks(self, ctx: StageContext, examples: list[TrainExample]) -> StageHooks:
        self._facts = {}
        if not self.fisher or ctx.model is None or self.ecfg.lam == 0:
            return StageHooks()
        params = trainable(ctx.model.model)
        names = [n for n in self.fisher if n in params]
        return StageHooks(penalties=[EWCPenalty([params[n] for n in names], [self.fisher[n] for n in names],
                                                [self.anchor[n] for n in names], self.ecfg.lam)])

    def after_stage(self, ctx: StageContext) -> None:
        if ctx.model is None or ctx.stage == len(ctx.stream.tasks) - 1:  # no later stage to protect it in
            return
        task = ctx.current
        picks = ctx.rng("ewc-fisher", task.name).permutation(len(task.train))[: self.ecfg.fisher_samples]
        model = ctx.model.model
        params = trainable(model)
        was_training = model.training
        model.eval()  # no dropout: the Fisher of the model as it is
        try:
            f_k = diagonal_fisher(params, (self._loss_of(ctx, task.train[int(i)]) for i in picks))
        finally:
            model.train(was_training)
        gamma = self.ecfg.gamma
        self.fisher = {n: gamma * self.fisher[n] + f if n in self.fisher else f for n, f in f_k.items()}
        self.anchor = {n: p.detach().float().cpu().clone() for n, p in params.items()}
        self.fisher = {n: f.cpu() for n, f in self.fisher.items()}
        self._facts = {"ewc_fisher_sum": float(sum(f.sum() for f in f_k.values())),
                       "ewc_fisher_params": sum(f.numel() for f in f_k.values()), "ewc_fisher_samples": len(picks)}

    @staticmethod
    def _loss_of(ctx: StageContext, x: Instance) -> Callable[[], torch.Tensor]:
        bundle = ctx.model

        def loss() -> torch.Tensor:
            ids, labels = bundle.encoder.example(x.instruction, x.input, x.output, ctx.cfg.train.max_length)
            device = bundle.device
            batch = {"input_ids": torch.tensor([ids], device=device), "labels": torch.tensor([labels], device=device),
                     "attention_mask": torch.ones(1, len(ids), dtype=torch.long, device=device)}
            return response_loss(bundle.model, batch)

        return loss

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {**{f"fisher/{n}": f for n, f in self.fisher.items()},
                **{f"anchor/{n}": a for n, a in self.anchor.items()}}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.fisher = {k[len("fisher/"):]: v for k, v in tensors.items() if k.startswith("fisher/")}
        self.anchor = {k[len("anchor/"):]: v for k, v in tensors.items() if k.startswith("anchor/")}

    def stage_facts(self) -> dict:
        return dict(self._facts)
