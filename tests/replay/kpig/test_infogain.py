"""IG sign on a constructed case: a model that reads the key word vs one that ignores it."""
import numpy as np
import pytest
import torch

from citune.config import load_config
from citune.engine.batching import collate
from citune.models.loss import response_loss
from citune.models import load_model
from citune.paths import cache_root
from citune.replay.kpig.infogain import information_gain
from citune.spans import mask

WORDS = ("red", "blue")
INPUTS = ("item a", "item b")


def instruction(word: str) -> str:
    return f"Reply using the colour word '{word}' only."


def key_span(text: str, word: str) -> tuple[int, int]:
    start = text.index(f"'{word}'")
    return start, start + len(word) + 2


def trained(answer) -> object:
    """A fresh one-layer model (full fine-tuning) trained for a few steps on the colour data."""
    cfg = load_config(None, ["model.name=tiny", "model.chat_template=false", "model.finetune=full",
                             "model.tiny.hidden_size=32", "model.tiny.intermediate_size=64",
                             "model.tiny.num_hidden_layers=1"])
    bundle = load_model(cfg.model, cache_root())
    rows = [dict(zip(("input_ids", "labels"), bundle.encoder.example(instruction(w), x, answer(w), 64)))
            for w in WORDS for x in INPUTS]
    batch = collate(rows, bundle.tokenizer.pad_token_id)
    model = bundle.model
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    for _ in range(120):
        loss = response_loss(model, batch)
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert loss.item() < 0.1
    return bundle


def items(answer):
    out = []
    for w in WORDS:
        text = instruction(w)
        out += [(text, mask(text, [key_span(text, w)]), x, answer(w)) for x in INPUTS]
    return out


@pytest.fixture(scope="module")
def models():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is much faster on a shared machine
    torch.manual_seed(0)
    try:
        yield {"reads": trained(lambda w: w), "ignores": trained(lambda w: "green")}
    finally:
        torch.set_num_threads(threads)


def test_ig_positive_when_the_answer_depends_on_the_key_part(models):
    bundle = models["reads"]
    ig = information_gain(bundle, items(lambda w: w), "nll", batch_size=3)
    assert np.mean(ig) > 0.3
    assert min(ig) > -0.05
    assert bundle.model.training  # the train mode is restored


def test_ig_near_zero_when_the_answer_ignores_the_key_part(models):
    ig = information_gain(models["ignores"], items(lambda w: "green"), "nll")
    assert abs(np.mean(ig)) < 0.05


def test_entropy_and_kl_options(models):
    dep = items(lambda w: w)
    indep = items(lambda w: "green")
    kl_dep = information_gain(models["reads"], dep, "kl")
    kl_indep = information_gain(models["ignores"], indep, "kl")
    assert min(kl_dep + kl_indep) >= -1e-6  # a KL divergence is never negative
    assert np.mean(kl_dep) > 0.3 and np.mean(kl_indep) < 0.05
    h_dep = information_gain(models["reads"], dep, "entropy")
    h_indep = information_gain(models["ignores"], indep, "entropy")
    # the key parts make the model surer (0.09-0.2 nats depending on the CPU's float rounding in training)
    assert np.mean(h_dep) > 0.05
    assert abs(np.mean(h_indep)) < 0.01


def test_batching_does_not_change_the_values(models):
    data = items(lambda w: w)
    one = information_gain(models["reads"], data, "nll", batch_size=1)
    many = information_gain(models["reads"], data, "nll", batch_size=8)
    assert np.allclose(one, many, atol=1e-4)
    assert information_gain(models["reads"], [], "nll") == []


def _nll(bundle, instruction_text: str, x: str, y: str) -> float:
    """Mean response NLL from one plain forward of one unpadded sequence."""
    ids, labels = bundle.encoder.example(instruction_text, x, y, 256)
    with torch.no_grad():
        logits = bundle.model(input_ids=torch.tensor([ids])).logits[0, :-1]
    target = torch.tensor(labels[1:])
    keep = target != -100
    return float(torch.nn.functional.cross_entropy(logits[keep], target[keep]))


def test_shared_prefix_scoring_equals_separate_forwards(models):
    """The full and masked prompts share a prefix that is computed once: the IG must still be that of
    two independent forward passes."""
    bundle = models["reads"]
    data = items(lambda w: w)
    bundle.model.eval()
    expected = [_nll(bundle, m, x, y) - _nll(bundle, ins, x, y) for ins, m, x, y in data]
    from citune.models.forward import sharing_pays

    rows = [bundle.encoder.example(t, x, y, 256)[0] for ins, m, x, y in data for t in (ins, m)]
    twins = [next(k for k, (a, b) in enumerate(zip(rows[i], rows[i + 1])) if a != b) for i in range(0, len(rows), 2)]
    assert sharing_pays(rows[:8], [n for n in twins[:4] for _ in (0, 1)])  # the shared path is the one tested
    got = information_gain(bundle, data, "nll", batch_size=4)
    assert np.allclose(got, expected, atol=1e-4)
    assert max(abs(v) for v in expected) > 0.1  # a real signal, not zeros on both sides
