"""The trainer's building blocks on a tiny random model: loss, encoding, batching, checkpoints."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from citune.data.prompt import PromptEncoder
from citune.types import Instance
from citune.engine.batching import collate, encode_examples, length_grouped_batches
from citune.models.forward import position_ids
from citune.models.checkpoint import load_trainable, save_trainable, trainable_state
from citune.models.loss import response_loss
from citune.types import TrainExample


def _inst(i, out="blue"):
    return Instance("Name the colour.", f"item {i} " * (i + 1), (out,), "t", "s", str(i))


def test_response_loss_equals_full_logits_cross_entropy(tiny_bundle):
    rows = encode_examples(tiny_bundle.encoder, [TrainExample(_inst(i)) for i in range(3)], 64)
    batch = collate(rows, tiny_bundle.tokenizer.pad_token_id)
    fast = response_loss(tiny_bundle.model, batch)
    out = tiny_bundle.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            position_ids=position_ids(batch["attention_mask"]))
    logits, targets = out.logits[:, :-1], batch["labels"][:, 1:]
    full = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
    assert torch.allclose(fast, full, atol=1e-5)


def test_left_padding_does_not_change_a_rows_loss(tiny_bundle):
    short, long = (encode_examples(tiny_bundle.encoder, [TrainExample(_inst(i))], 64)[0] for i in (0, 5))
    alone = response_loss(tiny_bundle.model, collate([short], tiny_bundle.tokenizer.pad_token_id))
    padded = collate([short, long], tiny_bundle.tokenizer.pad_token_id)
    padded["labels"][1] = -100  # score only the short, left-padded row
    assert torch.allclose(alone, response_loss(tiny_bundle.model, padded), atol=1e-4)


def test_encoding_truncates_the_input_only(tiny_bundle):
    enc = PromptEncoder(tiny_bundle.tokenizer, chat=False)
    ids, labels = enc.example("Instruction head.", "word " * 500, "the answer", 40)
    text = tiny_bundle.tokenizer.decode(ids)
    assert len(ids) == 40
    assert text.startswith("Instruction head.")
    assert text.endswith("the answer" + tiny_bundle.tokenizer.eos_token)
    resp = enc.response_ids("the answer")
    assert labels[-len(resp):] == resp and set(labels[:-len(resp)]) == {-100}


def test_chat_template_wraps_the_prompt(tiny_bundle):
    ids = tiny_bundle.encoder.prompt_ids("Do it.", "x", 256)
    text = tiny_bundle.tokenizer.decode(ids)
    assert "<|im_start|>user" in text and text.rstrip().endswith("<|im_start|>assistant")


def test_length_grouped_batches_cover_every_example_once():
    lengths = list(np.random.default_rng(0).integers(5, 100, size=103))
    batches = length_grouped_batches(lengths, 8, np.random.default_rng(1))
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(103))
    # Grouping by length reduces padding compared with random batches.
    pad = lambda bs: sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in bs)  # noqa: E731
    random_batches = length_grouped_batches(lengths, 8, np.random.default_rng(1), group=False)
    assert pad(batches) < pad(random_batches)


def test_collate_builds_masks_for_extra_sequences():
    rows = [{"input_ids": [1, 2], "labels": [-100, 2], "masked_input_ids": [7], "masked_labels": [7]},
            {"input_ids": [3], "labels": [3], "masked_input_ids": [8, 9, 10], "masked_labels": [-100, 9, 10]}]
    b = collate(rows, pad_id=0)
    assert b["input_ids"].tolist() == [[1, 2], [0, 3]]
    assert b["labels"].tolist() == [[-100, 2], [-100, 3]]
    assert b["masked_attention_mask"].tolist() == [[0, 0, 1], [1, 1, 1]]
    assert b["masked_labels"].tolist() == [[-100, -100, 7], [-100, 9, 10]]


def test_checkpoint_round_trip(tiny_bundle, tiny_cfg, tmp_path):
    from citune.models import load_model
    from citune.paths import cache_root

    with torch.no_grad():
        for p in tiny_bundle.model.parameters():
            if p.requires_grad:
                p.add_(0.01)
    save_trainable(tiny_bundle.model, tmp_path / "s.safetensors")
    fresh = load_model(tiny_cfg.model, cache_root(), state=tmp_path / "s.safetensors")
    a, b = trainable_state(tiny_bundle.model), trainable_state(fresh.model)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(RuntimeError):
        load_trainable(torch.nn.Linear(2, 2), tmp_path / "s.safetensors")


def test_lora_initialisation_follows_the_seed_not_the_global_random_state(tiny_cfg):
    """torch starts each process from a random seed, and PEFT draws LoRA's A matrices from the global
    generator: the adapters must come from the run's seed, or two runs of one config (and a resumed
    first stage) train different models."""
    from citune.models import load_model
    from citune.paths import cache_root

    def lora_a(seed):
        model = load_model(tiny_cfg.model, cache_root(), seed=seed).model
        return {k: v for k, v in trainable_state(model).items() if "lora_A" in k}

    torch.manual_seed(123)
    first = lora_a(7)
    after = torch.rand(3)
    torch.manual_seed(456)
    again = lora_a(7)
    assert first and all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], v) for k, v in lora_a(8).items())
    torch.manual_seed(123)
    lora_a(7)
    assert torch.equal(torch.rand(3), after)  # the caller's random stream is untouched


def test_a_stage_leaves_no_optimizer_state_behind(tiny_cfg):
    """Each stage makes its own optimizer; once the stage is done nothing keeps it (or its state,
    two copies of the trainable weights) alive, so memory does not grow with the stages."""
    import gc
    import weakref

    from accelerate import Accelerator

    from citune.engine import trainer
    from citune.models import load_model
    from citune.paths import cache_root

    bundle = load_model(tiny_cfg.model, cache_root())
    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(bundle.model)
    made = []
    real = trainer._optimizer
    def spy(*a, **k):
        opt = real(*a, **k)
        made.append(weakref.ref(opt))
        return opt
    try:
        trainer._optimizer = spy
        for stage in range(2):
            trainer.train_stage(accelerator, bundle, [TrainExample(_inst(i)) for i in range(4)], tiny_cfg.train,
                                seed=stage, model=model)
    finally:
        trainer._optimizer = real
    gc.collect()
    assert len(made) == 2 and all(r() is None for r in made)
    assert accelerator._optimizers == [] and len(accelerator._models) == 1


def test_one_example_per_reference_when_asked(tiny_bundle):
    """Issue 21, defect 5: only the first reference was ever trained; `train.references: all` trains each
    (the official InsCL code), `first` (the default) keeps one example per instance."""
    from citune.engine.batching import encode_examples
    from citune.types import Instance, TrainExample, per_reference

    x = Instance("Name a colour.", "", ("red", "blue", "green"), "t", uid="x")
    y = Instance("Name a fruit.", "", ("apple",), "t", uid="y")
    examples = [TrainExample(x), TrainExample(y, is_replay=True)]
    assert per_reference(examples, "first") == examples
    every = per_reference(examples, "all")
    assert [(ex.instance.uid, ex.target, ex.is_replay) for ex in every] == [
        ("x", "red", False), ("x", "blue", False), ("x", "green", False), ("y", "apple", True)]
    rows = encode_examples(tiny_bundle.encoder, every, 64)
    tok = tiny_bundle.tokenizer
    trained = [tok.decode([t for t in r["labels"] if t != -100], skip_special_tokens=True).strip() for r in rows]
    assert trained == ["red", "blue", "green", "apple"]
