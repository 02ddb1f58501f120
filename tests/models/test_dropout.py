import pytest
import torch

from citune.models.dropout import LEVELS, FastDropout


def test_the_drop_rate_is_p_rounded_to_sixteen_bits_in_every_lane():
    """Each 64-bit draw gives four elements: each of the four lanes must drop at the same rate (a
    draw of 63 bits, torch's default for int64, would never drop the lane holding the top bit)."""
    torch.manual_seed(0)
    drop = FastDropout(0.05).train()
    assert drop.dropped == 3277  # round(0.05 * 65536)
    out = drop(torch.ones(400_000))
    rate = 3277 / LEVELS
    lanes = (out == 0).view(-1, 4).float().mean(0)
    sd = (rate * (1 - rate) / 100_000) ** 0.5
    assert torch.all((lanes - rate).abs() < 5 * sd), lanes
    kept = out[out != 0]
    assert torch.all(kept == LEVELS / (LEVELS - 3277))  # 1 / (1 - rate): the expectation is unchanged
    assert abs(out.mean().item() - 1) < 5 * (rate / (1 - rate) / 400_000) ** 0.5


def test_it_is_seeded_identity_in_eval_and_its_gradient_is_the_mask():
    x = torch.randn(3, 7, 5, requires_grad=True)
    drop = FastDropout(0.3).train()
    torch.manual_seed(1)
    a = drop(x)
    torch.manual_seed(1)
    b = drop(x)
    assert torch.equal(a, b) and a.shape == x.shape
    assert (a == 0).any() and (a != 0).any()
    a.sum().backward()
    assert torch.equal(x.grad, (a != 0).float() / (1 - drop.dropped / LEVELS))
    assert drop.eval()(x) is x
    assert FastDropout(0.0).train()(x) is x


@pytest.mark.parametrize("p", [1e-6, 0.9999999])
def test_a_rate_that_rounds_to_none_or_all_levels_falls_back_to_torch_dropout(p):
    torch.manual_seed(2)
    x = torch.ones(1000)
    got = FastDropout(p).train()(x)
    torch.manual_seed(2)
    assert torch.equal(got, torch.nn.functional.dropout(x, p, True))


def test_lora_layers_get_fast_dropout_unless_switched_off():
    from citune.config import load_config
    from citune.models import load_model
    from citune.paths import cache_root

    def drops(*overrides):
        cfg = load_config(None, ["model.name=tiny", *overrides])
        model = load_model(cfg.model, cache_root()).model
        return [d for m in model.modules() if isinstance(getattr(m, "lora_dropout", None), torch.nn.ModuleDict)
                for d in m.lora_dropout.values()]

    fast = drops()
    assert fast and all(isinstance(d, FastDropout) and d.p == 0.05 for d in fast)
    plain = drops("model.lora.fast_dropout=false")
    assert len(plain) == len(fast) and all(type(d) is torch.nn.Dropout for d in plain)
    assert all(type(d) is torch.nn.Identity for d in drops("model.lora.dropout=0"))
