"""Compute settings (issue 22): mixed precision keeps float32 weights, gradient checkpointing changes
nothing but memory, attention kernels and precisions a machine lacks are refused in one line, and a
recipe's effective batch is checked when read and at launch."""
import json
from pathlib import Path
import subprocess
import sys

import pytest
import torch

from citune.config import load_config
from citune.engine.batching import collate, encode_examples
from citune.engine.precision import check_launch, mixed_precision
from citune.errors import InputError
from citune.models import load_model
from citune.models.loading import enable_gradient_checkpointing
from citune.models.loss import response_loss
from citune.paths import cache_root
from citune.types import Instance, TrainExample

ROOT_TINY = Path(__file__).resolve().parents[1] / "examples" / "tiny.yaml"
EXAMPLES = [TrainExample(Instance("Answer the question.", f"What is {a} plus {b}?", (str(a + b),), uid=str(a)))
            for a, b in [(1, 2), (3, 5), (10, 7)]]


def _batch(bundle):
    rows = encode_examples(bundle.encoder, EXAMPLES, 64)
    return collate(rows, bundle.tokenizer.pad_token_id)


def _loss_and_grads(finetune: str, checkpointing: bool):
    cfg = load_config(None, ["model.name=tiny", f"model.finetune={finetune}", "model.lora.dropout=0"])
    bundle = load_model(cfg.model, cache_root(), seed=3)
    if checkpointing:
        enable_gradient_checkpointing(bundle.model)
    bundle.model.train()
    loss = response_loss(bundle.model, _batch(bundle))
    loss.backward()
    grads = {n: p.grad.clone() for n, p in bundle.model.named_parameters() if p.requires_grad}
    return loss.item(), grads


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(finetune):
    loss, grads = _loss_and_grads(finetune, False)
    loss_ckpt, grads_ckpt = _loss_and_grads(finetune, True)
    assert abs(loss - loss_ckpt) < 1e-5
    assert grads.keys() == grads_ckpt.keys() and grads
    for name in grads:
        assert torch.allclose(grads[name], grads_ckpt[name], atol=1e-5), name


def test_gradient_checkpointing_is_on_while_training(tmp_path):
    from citune.engine.trainer import prepare_for_training
    from citune.runs.runner import make_accelerator

    cfg = load_config(None, ["model.name=tiny", "train.gradient_checkpointing=true"])
    bundle = load_model(cfg.model, cache_root())
    prepare_for_training(make_accelerator(cfg, tmp_path), bundle.model, cfg.train)
    assert bundle.model.is_activation_checkpointing


def test_bf16_autocast_keeps_float32_weights(tmp_path):
    """One bf16 mixed-precision stage: the layers compute in bf16, the parameters (Accelerate's master
    weights: there is no other copy) stay float32 and change."""
    from citune.engine.trainer import prepare_for_training, train_stage
    from citune.runs.runner import make_accelerator

    cfg = load_config(None, ["model.name=tiny", "model.finetune=full", "train.mixed_precision=bf16",
                             "train.batch_size=3", "train.lr=0.01", "run.quiet=true"])
    accelerator = make_accelerator(cfg, tmp_path)
    assert accelerator.mixed_precision == "bf16"
    bundle = load_model(cfg.model, cache_root())
    before = {n: p.detach().clone() for n, p in bundle.model.named_parameters()}
    model = prepare_for_training(accelerator, bundle.model, cfg.train)
    seen = []
    hook = bundle.model.model.layers[0].self_attn.q_proj.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    train_stage(accelerator, bundle, EXAMPLES, cfg.train, seed=0, model=model)
    hook.remove()
    assert seen and set(seen) == {torch.bfloat16}
    assert {p.dtype for p in bundle.model.parameters()} == {torch.float32}
    assert any(not torch.equal(before[n], p) for n, p in bundle.model.named_parameters())
    accelerator.end_training()


def test_mixed_precision_auto_is_no_on_the_cpu(monkeypatch):
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    cfg = load_config(None, [])
    assert mixed_precision(cfg.train) == ("bf16" if torch.cuda.is_available() else "no")
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # a launch profile decides
    assert mixed_precision(cfg.train) is None
    assert mixed_precision(load_config(None, ["train.mixed_precision=no"]).train) == "no"


def _cli(tmp_path, *overrides):
    return subprocess.run([sys.executable, "-m", "citune", "run", "-o", str(tmp_path / "run"), "model.name=tiny",
                           *overrides], capture_output=True, text=True, cwd=tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusals of a machine without a GPU")
@pytest.mark.parametrize("override, key", [("model.attn_implementation=flash_attention_2", "model.attn_implementation"),
                                           ("train.mixed_precision=fp16", "train.mixed_precision")])
def test_what_the_machine_lacks_is_refused_in_one_line(tmp_path, override, key):
    done = _cli(tmp_path, override)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0] and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "run").exists()


def test_effective_batch_is_checked_when_read_and_at_launch():
    with pytest.raises(InputError, match=r"train.effective_batch: 128 required, but batch_size 32 x grad_accum 2 = 64"):
        load_config(None, ["train.effective_batch=128", "train.batch_size=32", "train.grad_accum=2"])
    cfg = load_config(None, ["train.effective_batch=128", "train.batch_size=32", "train.grad_accum=4"])
    check_launch(cfg.train, 8, "x.yaml")  # 4 per device x 4 x 8 = 128
    with pytest.raises(InputError, match=r"x.yaml: train.batch_size: 32 does not split evenly over 6 processes"):
        check_launch(cfg.train, 6, "x.yaml")


def test_the_manifest_records_the_compute_settings(tmp_path):
    from citune.runs.runner import run_stream

    cfg = load_config(ROOT_TINY, ["run.quiet=true", "train.gradient_checkpointing=true", "train.mixed_precision=bf16",
                                  "data.synthetic.train_per_task=4", "data.synthetic.test_per_task=2",
                                  "train.epochs=1", "eval.max_new_tokens=2"])
    run_stream(cfg, tmp_path / "run")
    compute = json.loads((tmp_path / "run" / "manifest.json").read_text())["compute"]
    assert compute == {"mixed_precision": "bf16", "dtype": "float32", "attn_implementation": "sdpa",
                       "gradient_checkpointing": True, "device": "cpu", "processes": 1, "distributed": "NO"}


def test_the_inscl_paper_preset_plans_16_stages_with_200_per_previous_category(tmp_path, superni_dir, tiny_cfg):
    from citune.models.loading import load_base

    model, tokenizer, _ = load_base(tiny_cfg.model, cache_root())
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    preset = Path(__file__).resolve().parents[1] / "examples" / "inscl-paper.yaml"
    done = subprocess.run([sys.executable, "-m", "citune", "plan", str(preset), f"model.name={tmp_path / 'model'}",
                           f"data.superni.root={superni_dir}", "--json", str(tmp_path / "plan.json")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "full fine-tuning" in done.stdout and "mixed precision bf16" in done.stdout
    assert "batch 32 per step x 4 accumulated = 128" in done.stdout
    plans = json.loads((tmp_path / "plan.json").read_text())
    assert len(plans) == 16
    assert [p["budget"] for p in plans] == [200 * i for i in range(16)]
    assert all(p["replayed"] == p["budget"] for p in plans)
    cfg = load_config(preset, [f"model.name={tmp_path / 'model'}"])
    assert (cfg.train.epochs, cfg.train.lr, cfg.train.warmup_ratio, cfg.train.max_length) == (2, 2e-5, 0.03, 2048)
    with pytest.raises(InputError, match="train.effective_batch: 128 required"):
        load_config(preset, ["train.grad_accum=2"])
