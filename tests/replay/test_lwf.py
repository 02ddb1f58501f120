"""LwF (replay/lwf.py): the top-k KL against a manual KL, zero when teacher and student agree."""
import pytest
import torch
import torch.nn.functional as F

from citune.config import load_config
from citune.engine.batching import collate, encode_examples
from citune.models.loss import response_loss
from citune.replay import StageContext, get_strategy
from citune.replay.lwf import topk_kl
from citune.types import Instance, Stream, Task, TrainExample


def test_topk_kl_over_the_whole_vocabulary_is_the_kl():
    gen = torch.Generator().manual_seed(1)
    teacher, student, T = torch.randn(3, 6, generator=gen), torch.randn(3, 6, generator=gen), 2.0
    logp = F.log_softmax(teacher / T, dim=-1)
    ids = torch.arange(6).expand(3, 6)
    p, q = logp.exp(), F.softmax(student / T, dim=-1)
    manual = (p * (p.log() - q.log())).sum(-1)
    assert topk_kl(student, ids, logp, T).tolist() == pytest.approx(manual.tolist(), abs=1e-6)
    # on a top-2 support both distributions are renormalised there
    top = logp.topk(2, dim=-1)
    pt = F.softmax(top.values, dim=-1)
    qs = F.softmax(F.log_softmax(student / T, dim=-1).gather(-1, top.indices), dim=-1)
    expect = (pt * (pt.log() - qs.log())).sum(-1)
    assert topk_kl(student, top.indices, top.values, T).tolist() == pytest.approx(expect.tolist(), abs=1e-6)
    assert torch.all(topk_kl(teacher, top.indices, top.values, T).abs() < 1e-6)


def _stream():
    tasks = [Task(f"t{i}", [Instance("Repeat the word.", f"word{j}", (f"word{j} again",), f"t{i}", uid=f"{i}{j}")
                            for j in range(4)], []) for i in range(2)]
    return Stream(tasks)


def test_the_distillation_term_is_zero_when_student_is_teacher(tiny_bundle, tmp_path):
    cfg = load_config(None, ["model.name=tiny", "replay.strategy=lwf", "replay.lwf.top_k=5"])
    stream = _stream()
    examples = [TrainExample(x) for x in stream.tasks[1].train]
    lwf = get_strategy("lwf", cfg)
    assert lwf.hooks(StageContext(cfg, stream, 0, tmp_path, model=tiny_bundle), examples).objective is None
    objective = lwf.hooks(StageContext(cfg, stream, 1, tmp_path, model=tiny_bundle), examples).objective
    rows = encode_examples(tiny_bundle.encoder, examples, 64, objective)
    batch = collate(rows, tiny_bundle.tokenizer.pad_token_id)
    tiny_bundle.model.eval()
    loss, logged = objective.loss(tiny_bundle.model, batch)
    assert logged["lwf_kl"] == pytest.approx(0.0, abs=1e-5)
    assert float(loss.detach()) == pytest.approx(float(response_loss(tiny_bundle.model, batch).detach()), rel=1e-5)
    with torch.no_grad():  # another student: the term is positive
        first = next(p for n, p in tiny_bundle.model.named_parameters() if "lora_B" in n)  # B = 0 at the start
        saved = first.clone()
        first.add_(0.5)
        try:
            assert objective.loss(tiny_bundle.model, batch)[1]["lwf_kl"] > 1e-4
        finally:
            first.copy_(saved)


def test_lwf_and_kpig_both_own_the_loss():
    from citune.errors import InputError

    with pytest.raises(InputError, match="kpig and lwf both define the training loss"):
        get_strategy("kpig+lwf", load_config(None, ["model.name=tiny", "replay.strategy=kpig+lwf"]))
    cfg = load_config(None, ["model.name=tiny", "replay.strategy=kpig+lwf", "replay.kpig.objective=false"])
    assert [m.name for m in get_strategy("kpig+lwf", cfg).parts] == ["kpig", "lwf"]
