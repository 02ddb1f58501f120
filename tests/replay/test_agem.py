"""A-GEM (replay/agem.py): the projection by hand, its invariants, the memory drawn once per task."""
import pytest
import torch

from citune.config import load_config
from citune.replay import StageContext, get_strategy
from citune.replay.agem import AGEMProjection, project
from citune.types import Instance, Stream, Task


def test_a_conflicting_gradient_is_projected_onto_the_reference_plane():
    g, g_ref = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    new, changed = project(g, g_ref)
    assert changed and new.tolist() == pytest.approx([0.5, 0.5])  # g - (-1 / 2) g_ref
    assert float(new @ g_ref) == pytest.approx(0.0)


def test_an_agreeing_gradient_is_unchanged():
    g = torch.tensor([1.0, 2.0])
    new, changed = project(g, torch.tensor([0.5, 0.1]))
    assert not changed and new is g


def test_random_conflicts_end_non_negative():
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        g, ref = torch.randn(7, generator=gen), torch.randn(7, generator=gen)
        assert float(project(g, ref)[0] @ ref) >= -1e-5


def test_projection_writes_the_parameters_gradients_in_place():
    grads = [torch.tensor([1.0]), torch.tensor([0.0])]
    assert AGEMProjection([]).project(grads, [torch.tensor([-1.0]), torch.tensor([1.0])])
    assert [float(g) for g in grads] == pytest.approx([0.5, 0.5])


def test_the_memory_of_a_task_is_the_same_at_every_stage(tmp_path):
    cfg = load_config(None, ["model.name=tiny", "replay.strategy=agem", "replay.per_task=3"])
    tasks = [Task(f"t{i}", [Instance("I", f"{i}-{j}", ("o",), f"t{i}", uid=f"{i}-{j}") for j in range(10)], [])
             for i in range(3)]
    agem = get_strategy("agem", cfg)
    at_1 = agem.memory(StageContext(cfg, Stream(tasks), 1, tmp_path))
    at_2 = agem.memory(StageContext(cfg, Stream(tasks), 2, tmp_path))
    assert len(at_1) == 3 and len(at_2) == 6
    assert [ex.instance.uid for ex in at_2[:3]] == [ex.instance.uid for ex in at_1]
    assert agem.select(StageContext(cfg, Stream(tasks), 2, tmp_path)) == []  # the memory is not trained on
