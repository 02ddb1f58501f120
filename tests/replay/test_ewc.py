"""EWC (replay/ewc.py): the penalty and its gradient by hand on two parameters, the Fisher of a known
model, online accumulation, anchors and the state kept across a resume."""
import pytest
import torch

from citune.config import load_config
from citune.replay import StageContext, get_strategy
from citune.replay import ewc as ewc_module
from citune.replay.ewc import EWCPenalty, diagonal_fisher
from citune.types import Instance, Stream, Task


def test_penalty_and_its_gradient_on_two_parameters():
    a, b = torch.tensor(1.0, requires_grad=True), torch.tensor(2.0, requires_grad=True)
    term = EWCPenalty([a, b], fisher=[torch.tensor(2.0), torch.tensor(3.0)],
                      anchor=[torch.tensor(0.0), torch.tensor(1.0)], lam=4.0)
    value, logged = term.penalty()
    assert float(value.detach()) == pytest.approx(10.0)  # 4/2 * (2 * 1^2 + 3 * 1^2)
    assert logged == {"ewc": pytest.approx(10.0)}
    value.backward()
    assert float(a.grad) == pytest.approx(8.0) and float(b.grad) == pytest.approx(12.0)  # lambda F (theta - theta*)


def test_fisher_of_a_known_model_is_the_mean_squared_gradient():
    # loss_i(w) = 0.5 (w . x_i - y_i)^2, gradient (w . x_i - y_i) x_i: at w = (1, 1) the gradients are
    # (1, 0) for x = (1, 0), y = 0 and (2, 4) for x = (1, 2), y = 1, so F = ((1 + 4) / 2, (0 + 16) / 2).
    w = torch.tensor([1.0, 1.0], requires_grad=True)
    data = [(torch.tensor([1.0, 0.0]), 0.0), (torch.tensor([1.0, 2.0]), 1.0)]
    fisher = diagonal_fisher({"w": w}, (lambda x=x, y=y: 0.5 * (w @ x - y) ** 2 for x, y in data))
    assert fisher["w"].tolist() == pytest.approx([2.5, 8.0])
    assert w.grad is None  # the training gradients are left alone


def _stream(k: int = 3) -> Stream:
    tasks = [Task(f"t{i}", [Instance("Say it.", f"in {i} {j}", (f"out {j}",), f"t{i}", uid=f"{i}-{j}")
                            for j in range(6)], []) for i in range(k)]
    return Stream(tasks)


def test_online_fisher_anchors_and_state(tiny_bundle, tmp_path, monkeypatch):
    cfg = load_config(None, ["model.name=tiny", "replay.strategy=ewc", "replay.ewc.gamma=0.5",
                             "replay.ewc.fisher_samples=2"])
    ewc = get_strategy("ewc", cfg)
    stream = _stream()
    params = dict(ewc_module.trainable(tiny_bundle.model))
    name = next(iter(params))
    fake = iter([{n: torch.full_like(p, 2.0) for n, p in params.items()},
                 {n: torch.full_like(p, 1.0) for n, p in params.items()}])
    monkeypatch.setattr(ewc_module, "diagonal_fisher", lambda ps, losses: (list(losses), next(fake))[1])
    ctx = lambda t: StageContext(cfg, stream, t, tmp_path, model=tiny_bundle)  # noqa: E731
    assert ewc.hooks(ctx(0), []).penalties == []  # nothing learned yet: no penalty
    ewc.after_stage(ctx(0))
    ewc.after_stage(ctx(1))
    assert torch.all(ewc.fisher[name] == 0.5 * 2.0 + 1.0)  # F <- gamma F + F_k
    assert torch.equal(ewc.anchor[name], params[name].detach().float())
    assert ewc.stage_facts()["ewc_fisher_samples"] == 2
    restored = get_strategy("ewc", cfg)
    restored.load_state_tensors(ewc.state_tensors())
    assert restored.fisher.keys() == ewc.fisher.keys() and torch.equal(restored.anchor[name], ewc.anchor[name])
    (term,) = restored.hooks(ctx(2), []).penalties
    assert float(term.penalty()[0].detach()) == 0.0  # at the anchors
    ewc.after_stage(ctx(2))  # the last stage: no later stage to protect it in, nothing changes
    assert torch.all(ewc.fisher[name] == 2.0)
