"""O-LoRA and IncLoRA (replay/olora.py): the orthogonality term by hand, earlier adapters untouched by a
training step (bitwise), every adapter in the checkpoint, the merged export equal to the adapter model."""
import pytest
import torch
from accelerate import Accelerator

from citune.config import load_config
from citune.engine.trainer import prepare_for_training, train_stage
from citune.errors import InputError
from citune.models import load_model
from citune.models.checkpoint import trainable_state
from citune.paths import cache_root
from citune.replay import StageContext, get_strategy
from citune.replay.olora import lora_layers
from citune.types import Instance, Stream, Task, TrainExample


def _stream(k: int = 3) -> Stream:
    return Stream([Task(f"t{i}", [Instance("Copy.", f"a{i}{j}", (f"b{i}{j}",), f"t{i}", uid=f"{i}{j}")
                                  for j in range(4)], []) for i in range(k)])


@pytest.fixture
def olora():
    cfg = load_config(None, ["model.name=tiny", "replay.strategy=olora", "train.epochs=1", "train.batch_size=2",
                             "train.lr=0.01"])
    bundle = load_model(cfg.model, cache_root(), seed=cfg.seed)
    strategy = get_strategy("olora", cfg)
    strategy.setup_model(bundle, _stream())
    return cfg, bundle, strategy


def test_orthogonality_term_by_hand(olora, tmp_path):
    cfg, bundle, strategy = olora
    (term,) = strategy.hooks(StageContext(cfg, _stream(), 2, tmp_path, model=bundle), []).penalties
    manual = sum((layer.lora_A[s].weight @ layer.lora_A["task3"].weight.T).abs().sum()
                 for layer in lora_layers(bundle.model) for s in ("default", "task2"))
    value, logged = term.penalty()
    assert float(value.detach()) == pytest.approx(0.5 * float(manual.detach()), rel=1e-6)
    assert logged["l2"] == 0.0
    assert get_strategy("inclora", cfg).hooks(StageContext(cfg, _stream(), 2, tmp_path, model=bundle), []).penalties == []


def test_a_stage_trains_only_its_adapter_and_evaluates_with_all(olora, tmp_path):
    cfg, bundle, strategy = olora
    stream = _stream()
    acc = Accelerator(cpu=True)
    model = prepare_for_training(acc, bundle.model, cfg.train)
    hooks = strategy.hooks(StageContext(cfg, stream, 1, tmp_path, model=bundle), [])
    before = {n: t.clone() for n, t in trainable_state(bundle.model).items()}
    assert set(bundle.model.base_model.active_adapters) == {"default", "task2"}
    train_stage(acc, bundle, [TrainExample(x) for x in stream.tasks[1].train], cfg.train, 7, hooks.objective,
                model=model, penalties=hooks.penalties)
    after = trainable_state(bundle.model)
    assert after.keys() == before.keys()  # every adapter of every task is in the checkpoint
    for name in before:
        same = torch.equal(before[name], after[name])
        assert same == (".task2." not in name), name  # default (task 1) and task3 untouched, bit for bit


def test_the_merged_export_computes_what_the_adapters_compute(tmp_path):
    from transformers import AutoModelForCausalLM

    from citune.runs.export import export_model, final_bundle
    from citune.runs.runner import run_stream

    tiny = str(__import__("pathlib").Path(__file__).resolve().parents[2] / "examples" / "tiny.yaml")
    cfg = load_config(tiny, ["replay.strategy=olora", "model.finetune=lora", "train.epochs=1", "run.quiet=true",
                             "data.synthetic.train_per_task=8", "data.synthetic.test_per_task=2"])
    run_stream(cfg, tmp_path / "run")
    bundle = final_bundle(tmp_path / "run")
    assert set(bundle.model.base_model.active_adapters) == {"default", "task2", "task3"}
    out = export_model(tmp_path / "run", tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    ids = torch.tensor([bundle.tokenizer("Decide whether it is positive.")["input_ids"]])
    with torch.no_grad():
        expect = bundle.model.eval()(input_ids=ids).logits
        got = merged(input_ids=ids).logits
    assert torch.allclose(got, expect, atol=1e-5)
    with pytest.raises(InputError, match="not an empty folder"):
        export_model(tmp_path / "run", out)


def test_olora_needs_lora(tmp_path):
    cfg = load_config(None, ["model.name=tiny", "model.finetune=full", "replay.strategy=olora"])
    bundle = load_model(cfg.model, cache_root(), seed=1)
    with pytest.raises(InputError, match="model.finetune=lora"):
        get_strategy("olora", cfg).setup_model(bundle, _stream())


def test_olora_under_full_fine_tuning_stops_before_anything_is_written(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "run"
    tiny = __import__("pathlib").Path(__file__).resolve().parents[2] / "examples" / "tiny.yaml"
    proc = subprocess.run([sys.executable, "-m", "citune", "run", str(tiny), "replay.strategy=olora", "-o", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "model.finetune: olora keeps one LoRA adapter per task" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not out.exists()
