"""Combinations `replay.strategy: a+b` (replay/compose.py): what is valid, what the parts contribute."""
import pytest
import torch

from citune.config import load_config
from citune.errors import InputError
from citune.replay import StageContext, get_strategy
from citune.types import Instance, Stream, Task


@pytest.mark.parametrize("name, problem", [
    ("inscl+random", "combines 2 replay strategies"),
    ("ewc+ewc", "names a method twice"),
    ("inscl+magic", "unknown replay strategy 'magic'"),
])
def test_invalid_combinations_are_refused_when_the_config_is_loaded(name, problem):
    with pytest.raises(InputError, match=f"replay.strategy: .*{problem}"):
        load_config(None, [f"replay.strategy={name}"])


def test_two_adapter_methods_cannot_combine():
    cfg = load_config(None, ["replay.strategy=olora+inclora"])
    with pytest.raises(InputError, match="both manage the LoRA adapters"):
        get_strategy(cfg.replay.strategy, cfg)


def test_replay_comes_from_the_replay_part_and_hooks_from_every_part(tiny_bundle, tmp_path):
    cfg = load_config(None, ["model.name=tiny", "replay.strategy=random+ewc+agem", "replay.per_task=2"])
    tasks = [Task(f"t{i}", [Instance("I", f"{i}{j}", ("o",), f"t{i}", uid=f"{i}{j}") for j in range(5)], [])
             for i in range(3)]
    both = get_strategy(cfg.replay.strategy, cfg)
    assert [p.name for p in both.parts] == ["random", "ewc", "agem"] and both.distributed == ("MULTI_CPU", "MULTI_GPU", "NO")
    ctx = StageContext(cfg, Stream(tasks), 2, tmp_path, model=tiny_bundle)
    assert [r.instance.uid for r in both.select(ctx)] == [r.instance.uid for r in get_strategy("random", cfg).select(ctx)]
    ewc = both.members[1]
    ewc.fisher = {n: torch.ones_like(p) for n, p in tiny_bundle.model.named_parameters() if p.requires_grad}
    ewc.anchor = {n: p.detach().clone() for n, p in tiny_bundle.model.named_parameters() if p.requires_grad}
    hooks = both.hooks(ctx, [])
    assert len(hooks.penalties) == 1 and hooks.projection is not None and len(hooks.projection.memory) == 4
    assert set(both.state_tensors()) == {f"ewc/{k}" for k in ewc.state_tensors()}


def test_two_projections_are_refused_before_a_run_and_lwf_keeps_to_data_parallel():
    cfg = load_config(None, ["replay.strategy=agem"])
    agem = get_strategy("agem", cfg)
    with pytest.raises(InputError, match="agem and agem2 both project the gradient"):  # one projector is registered: two members make the clash
        from citune.replay.compose import Combination

        twin = get_strategy("agem", cfg)
        twin.name = "agem2"
        Combination("agem+agem2", [agem, twin], cfg)
    assert get_strategy("lwf", cfg).distributed == ("NO", "MULTI_CPU", "MULTI_GPU")
