"""The CUDA code paths (marker `gpu`; skipped without a GPU, run by benchmarks/gpu_check.sh). The model
is CITUNE_GPU_MODEL (a model directory; the check builds SmolLM2-135M's architecture with random
weights), else the tiny random model."""
import os

import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

PROMPTS = [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [1, 2, 3, 4, 5, 6, 11, 12], [1, 2, 3, 4, 5, 6, 13, 14, 15, 16, 17, 18]]


def _config(*overrides):
    from citune.config import load_config

    return load_config(None, [f"model.name={os.environ.get('CITUNE_GPU_MODEL', 'tiny')}", *overrides])


def _bundle(cfg):
    from citune.models import load_model
    from citune.paths import cache_root

    bundle = load_model(cfg.model, cache_root(), seed=1)
    bundle.model.to("cuda")
    return bundle


def _examples():
    from citune.types import Instance, TrainExample

    return [TrainExample(Instance("Add the numbers.", f"{a} and {b}", (str(a + b),), uid=str(a))) for a, b in
            [(1, 2), (3, 4), (5, 6), (7, 8)]]


def test_bf16_autocast_on_cuda_keeps_float32_weights(tmp_path):
    from citune.engine.trainer import prepare_for_training, train_stage
    from citune.runs.runner import make_accelerator

    cfg = _config("model.finetune=full", "train.mixed_precision=bf16", "train.batch_size=2", "run.quiet=true")
    accelerator = make_accelerator(cfg, tmp_path)
    assert accelerator.mixed_precision == "bf16" and accelerator.device.type == "cuda"
    bundle = _bundle(cfg)
    before = {n: p.detach().clone() for n, p in bundle.model.named_parameters()}
    model = prepare_for_training(accelerator, bundle.model, cfg.train)
    stats = train_stage(accelerator, bundle, _examples(), cfg.train, seed=0, model=model)
    assert torch.isfinite(torch.tensor(stats.final_loss))
    assert {p.dtype for p in bundle.model.parameters()} == {torch.float32}
    assert any(not torch.equal(before[n], p) for n, p in bundle.model.named_parameters())


def test_gradient_checkpointing_on_cuda_gives_the_same_gradients():
    from citune.engine.batching import collate, encode_examples
    from citune.models.loading import enable_gradient_checkpointing
    from citune.models.loss import response_loss

    results = []
    for checkpointing in (False, True):
        bundle = _bundle(_config("model.lora.dropout=0"))
        if checkpointing:
            enable_gradient_checkpointing(bundle.model)
        bundle.model.train()
        rows = encode_examples(bundle.encoder, _examples(), 64)
        batch = {k: v.cuda() for k, v in collate(rows, bundle.tokenizer.pad_token_id).items()}
        loss = response_loss(bundle.model, batch)
        loss.backward()
        results.append((loss.item(), [p.grad.clone() for p in bundle.model.parameters() if p.requires_grad]))
    (loss, grads), (loss_ckpt, grads_ckpt) = results
    assert abs(loss - loss_ckpt) < 1e-4
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(grads, grads_ckpt))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_batched_decoding_on_cuda_equals_model_generate(dtype):
    from citune.models.generate import greedy_batch, hf_generate_batch

    bundle = _bundle(_config(f"model.dtype={dtype}"))
    bundle.model.eval()
    pad, eos = bundle.tokenizer.pad_token_id, [bundle.tokenizer.eos_token_id]
    ours = greedy_batch(bundle.model, PROMPTS, 8, pad, eos, prefix_lens=[6, 6, 6])
    theirs = [hf_generate_batch(bundle.model, [p], 8, pad, eos)[0] for p in PROMPTS]
    assert ours == theirs


def test_lora_folded_into_the_weights_on_cuda():
    from citune.models.lora_merge import lora_merged, mergeable_layers

    bundle = _bundle(_config("model.finetune=lora"))
    model = bundle.model.eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.01)
        ids = torch.tensor([PROMPTS[0]], device="cuda")
        weights = [layer.get_base_layer().weight for layer in mergeable_layers(model)]
        plain = model(input_ids=ids).logits.float()
        with lora_merged(model):
            merged = model(input_ids=ids).logits.float()
    assert weights and torch.allclose(merged, plain, atol=1e-2, rtol=1e-3)
    assert all(layer.get_base_layer().weight is w for layer, w in zip(mergeable_layers(model), weights))


def test_flash_attention_2_when_installed():
    pytest.importorskip("flash_attn")
    from citune.models.generate import greedy_batch

    outputs = []
    for impl in ("sdpa", "flash_attention_2"):
        bundle = _bundle(_config(f"model.attn_implementation={impl}", "model.dtype=bfloat16"))
        bundle.model.eval()
        outputs.append(greedy_batch(bundle.model, PROMPTS, 8, bundle.tokenizer.pad_token_id,
                                    [bundle.tokenizer.eos_token_id]))
    assert len(outputs[0]) == len(outputs[1]) == len(PROMPTS)
