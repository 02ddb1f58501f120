"""Generation through LoRA adapters folded into their base weights, for as long as it runs.

PEFT computes a LoRA layer as `base(x) + B(A(x)) * scaling`: two skinny matrix products and an add
on every adapted projection. Evaluation runs no backward pass, so the same function is one product
with `W + B A * scaling`; on SuperNI's stage evaluation (SmolLM2-135M, LoRA on q, k, v, o, 2 CPU
cores) that took prefill from 84 s to 69 s with every prediction unchanged (docs/BENCHMARKS.md).

The merged weight is a new tensor beside the original, which is put back untouched on exit (PEFT's
own merge adds the product into the weight and its unmerge subtracts it again, which leaves rounding
in the base weights that training would then carry on from)."""
from __future__ import annotations

from contextlib import contextmanager

import torch


def _plain_weight(w: torch.Tensor) -> bool:
    """A whole, ordinary tensor: not an FSDP2 shard (DTensor), a ZeRO-partitioned parameter (`ds_id`)
    or a quantized weight, all of which would need their own merge."""
    return type(w) in (torch.Tensor, torch.nn.Parameter) and not hasattr(w, "ds_id") and w.is_floating_point()


def _vanilla(layer, adapter: str) -> bool:
    """Plain LoRA: no variant (DoRA and the like; `use_dora` in PEFT versions before `lora_variant`) and
    no LoRA bias, so that the adapter is exactly `B A * scaling` added to the weight."""
    return not (adapter in getattr(layer, "lora_variant", {}) or getattr(layer, "use_dora", {}).get(adapter)
                or getattr(layer, "lora_bias", {}).get(adapter))


def mergeable_layers(model: torch.nn.Module) -> list:
    """The LoRA linear layers of `model` whose active adapters fold into one weight: vanilla LoRA
    (no DoRA or other variant, no LoRA bias) over a plain weight, adapters enabled and not merged by
    PEFT already. Empty when any adapted layer does not qualify: then nothing is merged."""
    try:
        from peft.tuners.lora.layer import Linear, LoraLayer
    except ImportError:
        return []
    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    for layer in layers:
        active = [a for a in layer.active_adapters if a in layer.lora_A]
        if (type(layer) is not Linear or layer.disable_adapters or layer.merged
                or not all(_vanilla(layer, a) for a in active) or not _plain_weight(layer.get_base_layer().weight)):
            return []
    return layers


@contextmanager
def lora_merged(model: torch.nn.Module):
    """Within the block, `model`'s LoRA layers (see `mergeable_layers`) compute with their adapters'
    products added into the base weights, adapters off; on exit the original weights and adapter
    states are back, the same tensors. A model without such layers runs as it is."""
    saved = []
    try:
        with torch.no_grad():
            for layer in mergeable_layers(model):
                base = layer.get_base_layer()
                active = [a for a in layer.active_adapters if a in layer.lora_A]
                delta = sum(layer.get_delta_weight(a) for a in active)
                saved.append((layer, base, base.weight))
                base.weight = torch.nn.Parameter(base.weight + delta.to(base.weight.dtype), requires_grad=False)
                layer._disable_adapters = True  # PEFT's enable_adapters(False) would also freeze the adapters
        yield
    finally:
        for layer, base, weight in saved:
            base.weight = weight
            layer._disable_adapters = False
