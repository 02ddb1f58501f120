"""Generation through LoRA adapters folded into their base weights (`lora_merged`): the same function
inside the block, the very same weights and adapter states after it, and no merge where the adapters
do not fold into one weight."""
import pytest
import torch

from citune.models.generate import Completion, make_jobs, run_jobs
from citune.models.lora_merge import lora_merged, mergeable_layers


def _bundle(finetune="lora"):
    from citune.config import load_config
    from citune.models import load_model
    from citune.paths import cache_root

    bundle = load_model(load_config(None, ["model.name=tiny", "model.tiny.seed=5", f"model.finetune={finetune}"]).model,
                        cache_root())
    torch.manual_seed(0)
    with torch.no_grad():  # adapters that change the function (lora_B starts at zero), weights that vary outputs
        for name, p in bundle.model.named_parameters():
            if p.dim() == 2:
                p.normal_(0, 0.2 if "lora_" not in name else 0.3)
    bundle.model.eval()
    return bundle


@pytest.fixture(scope="module")
def lora_bundle():
    return _bundle()


def _ids(bundle):
    return torch.tensor([bundle.encoder.prompt_ids("Repeat the word.", "apple pear plum", 64)])


def test_merged_logits_equal_the_adapters_and_everything_is_back_after():
    bundle = _bundle()
    model = bundle.model.double()  # the same function, to well below float32 rounding
    layers = mergeable_layers(model)
    assert len(layers) > 0
    before = {id(l): (l.get_base_layer().weight, l.get_base_layer().weight.detach().clone()) for l in layers}
    ids = _ids(bundle)
    with torch.no_grad():
        plain = model(input_ids=ids).logits
        with lora_merged(model):
            merged = model(input_ids=ids).logits
            assert all(l.disable_adapters for l in layers)
            assert all(l.get_base_layer().weight is not before[id(l)][0] for l in layers)
        after = model(input_ids=ids).logits
    assert torch.allclose(merged, plain, rtol=0, atol=1e-9)
    assert torch.equal(after, plain)
    for l in layers:
        weight, copy = before[id(l)]
        assert l.get_base_layer().weight is weight and torch.equal(weight, copy)
        assert not l.disable_adapters and not l.merged


def test_the_adapters_still_train_after_a_merged_generation(lora_bundle):
    model = lora_bundle.model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    with lora_merged(model):
        pass
    assert {n for n, p in model.named_parameters() if p.requires_grad} == trainable
    assert trainable and all("lora_" in n for n in trainable)
    model.zero_grad()
    model(input_ids=_ids(lora_bundle)).logits.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if n in trainable)
    model.zero_grad()


def test_an_error_inside_the_block_restores_the_weights(lora_bundle):
    layers = mergeable_layers(lora_bundle.model)
    weights = [l.get_base_layer().weight for l in layers]
    with pytest.raises(RuntimeError, match="boom"):
        with lora_merged(lora_bundle.model):
            raise RuntimeError("boom")
    assert all(l.get_base_layer().weight is w and not l.disable_adapters for l, w in zip(layers, weights))


def test_generation_through_merged_adapters_equals_model_generate_on_the_adapters(lora_bundle):
    texts = [("Repeat the word.", "apple " * (i + 1)) for i in range(5)] + [("Sum", "1 2 3 4")]
    prompts = [lora_bundle.encoder.prompt_ids(ins, inp, 128) for ins, inp in texts]
    jobs = make_jobs(None, prompts, 6, 4, [ins for ins, _ in texts])
    ours = run_jobs(lora_bundle, jobs)  # merged meanwhile
    reference = run_jobs(lora_bundle, jobs, method="hf")  # model.generate through the PEFT layers
    assert ours == reference
    assert all(isinstance(c, Completion) for job in ours for c in job)
    assert len({c.text for job in ours for c in job}) > 1


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")  # PEFT calls it
def test_dora_adapters_are_not_merged():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(_bundle("full").model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], use_dora=True))
    assert mergeable_layers(model) == []
    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    with lora_merged(model):
        assert all(m.weight is w for m, w in zip([m for m in model.modules() if isinstance(m, torch.nn.Linear)], weights))


def test_a_model_without_adapters_runs_as_it_is():
    model = _bundle("full").model
    assert mergeable_layers(model) == []
    weights = [p for p in model.parameters()]
    with lora_merged(model):
        assert all(p is w for p, w in zip(model.parameters(), weights))
