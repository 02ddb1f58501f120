"""O-LoRA (Wang et al., Findings of EMNLP 2023) and IncLoRA, METHODS.md §5.

One LoRA adapter per task: task 1 trains PEFT's `default` adapter, task j > 1 the adapter `task<j>`.
At stage t the adapters of tasks 1..t are active (their outputs add up), only task t's trains; the
earlier ones are frozen. O-LoRA adds lambda_1 * sum over earlier adapters s and adapted layers of
sum |A_s A_t^T| (the absolute entries, as the official code computes it; A = the down-projection) and
lambda_2 * ||theta_t||^2 (the squared norm of the new adapter's A and B; the official code adds the
unsquared norm per matrix, which only matters for lambda_2 > 0, the default being 0). IncLoRA is the same
without the orthogonality term. Every adapter is in each stage's checkpoint; evaluation uses all adapters
learned so far, and `citune export` merges them into one model.
"""
from __future__ import annotations

import torch
from pydantic import ConfigDict, Field

from citune.config import Strict, config_file
from citune.errors import InputError
from citune.models.dropout import use_fast_dropout
from citune.models.loading import seeded
from citune.replay.base import ReplayStrategy, StageContext, register
from citune.types import StageHooks, Stream, TrainExample


class OLoRAConfig(Strict):
    """O-LoRA and IncLoRA: one LoRA adapter per task, earlier adapters frozen and kept active."""

    lambda_1: float = Field(0.5, ge=0, description="weight of the orthogonality term sum |A_s A_t^T| (O-LoRA; "
                            "IncLoRA has none)")
    lambda_2: float = Field(0.0, ge=0, description="weight of the squared norm of the new adapter")

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def adapter_names(n_tasks: int) -> list[str]:
    return ["default", *(f"task{j}" for j in range(2, n_tasks + 1))]


def lora_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if isinstance(getattr(m, "lora_A", None), torch.nn.ModuleDict)]


def activate(model: torch.nn.Module, active: list[str], trained: str | None) -> None:
    """Adapters `active` in the forward pass, `trained` the only one with gradients (None: none)."""
    model.base_model.set_adapter(active)
    for layer in lora_layers(model):
        for part in ("lora_A", "lora_B"):
            for name, module in getattr(layer, part).items():
                module.weight.requires_grad_(name == trained)


class OrthogonalityPenalty:
    """lambda_1 * sum_layers sum_{s < t} sum |A_s A_t^T| + lambda_2 * sum ||A_t||^2 + ||B_t||^2."""

    def __init__(self, layers: list[torch.nn.Module], earlier: list[str], current: str, lambda_1: float,
                 lambda_2: float):
        self.layers, self.earlier, self.current = layers, earlier, current
        self.lambda_1, self.lambda_2 = lambda_1, lambda_2

    def penalty(self) -> tuple[torch.Tensor, dict[str, float]]:
        orth = l2 = 0.0
        for layer in self.layers:
            a_t = layer.lora_A[self.current].weight
            if self.lambda_1:
                for s in self.earlier:
                    orth = orth + (layer.lora_A[s].weight @ a_t.T).abs().sum()
            if self.lambda_2:
                l2 = l2 + a_t.pow(2).sum() + layer.lora_B[self.current].weight.pow(2).sum()
        total = self.lambda_1 * orth + self.lambda_2 * l2
        if not torch.is_tensor(total):
            total = self.layers[0].lora_A[self.current].weight.new_zeros(())
        return total, {"orthogonality": float(orth.detach() if torch.is_tensor(orth) else orth),
                       "l2": float(l2.detach() if torch.is_tensor(l2) else l2)}


@register("olora", config=OLoRAConfig)
class OLoRA(ReplayStrategy):
    role = "training"
    paper = "O-LoRA: Wang et al., Orthogonal Subspace Learning for Language Model Continual Learning, Findings of EMNLP 2023"
    distributed = ("NO",)  # DDP builds its reducer over the parameters that train at launch; here they change per stage
    adapters = True
    orthogonal = True

    def select(self, ctx: StageContext):
        return []

    def check(self) -> None:
        if self.cfg.model.finetune != "lora":
            raise InputError(f"{self.name} keeps one LoRA adapter per task: set model.finetune=lora (for every "
                             "method compared with it, so that they train alike)", config_file(self.cfg),
                             "model.finetune")

    def setup_model(self, bundle, stream: Stream) -> None:
        self.check()
        model = bundle.model
        names = adapter_names(len(stream.tasks))
        for j, name in enumerate(names[1:], 2):
            with seeded(self.cfg.seed * 1000 + j):  # LoRA's A is drawn from the global generator
                model.add_adapter(name, model.peft_config["default"])
        if self.cfg.model.lora.fast_dropout:
            use_fast_dropout(model)
        activate(model, names[:1], names[0])

    def hooks(self, ctx: StageContext, examples: list[TrainExample]) -> StageHooks:
        if ctx.model is None:
            return StageHooks()
        model, t, names = ctx.model.model, ctx.stage, adapter_names(len(ctx.stream.tasks))
        activate(model, names[: t + 1], names[t])
        if t == 0:
            return StageHooks()
        ocfg = self.cfg.replay.olora
        lambda_1 = ocfg.lambda_1 if self.orthogonal else 0.0
        if lambda_1 == 0 and ocfg.lambda_2 == 0:
            return StageHooks()
        return StageHooks(penalties=[OrthogonalityPenalty(lora_layers(model), names[:t], names[t],
                                                          lambda_1, ocfg.lambda_2)])

    def final_model(self, bundle, stream: Stream) -> None:
        activate(bundle.model, adapter_names(len(stream.tasks)), None)


@register("inclora", config=OLoRAConfig, section="olora")
class IncLoRA(OLoRA):
    """O-LoRA without the orthogonality term (its own ablation): one frozen adapter per earlier task."""

    paper = "IncLoRA: the incremental-LoRA ablation of O-LoRA (Wang et al., Findings of EMNLP 2023)"
    orthogonal = False
