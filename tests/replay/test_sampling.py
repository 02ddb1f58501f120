"""Sampling inside a previous task (METHODS §3.6): exact totals, no duplicates, the edge cases."""
from collections import Counter

import numpy as np
import pytest

from citune.types import Instance, Task
from citune.replay.sampling import insinfo_sample, instruction_groups, spread_sample, uniform_sample

SIZES = {"a": 5, "b": 3, "c": 1, "d": 6}
SCORES = {"a": 3.0, "b": 1.0, "c": 0.0, "d": 2.0}  # rates 1/2, 1/6, 0, 1/3


def make_task(sizes=SIZES):
    train = [Instance(ins, f"{ins}{k}", ("o",), "t", "t", f"{ins}{k}") for ins, n in sizes.items() for k in range(n)]
    return Task("t", train, [])


def per_instruction(task, picks):
    return Counter(task.train[i].instruction for i in picks)


def rng(seed=0):
    return np.random.default_rng(seed)


def test_quota_below_the_number_of_instructions_takes_the_top_insinfo_ones():
    task = make_task()
    assert per_instruction(task, insinfo_sample(task, 1, SCORES, rng())) == {"a": 1}
    assert per_instruction(task, insinfo_sample(task, 2, SCORES, rng())) == {"a": 1, "d": 1}
    assert per_instruction(task, insinfo_sample(task, 3, SCORES, rng())) == {"a": 1, "d": 1, "b": 1}


def test_counts_follow_the_rates_with_at_least_one_each():
    task = make_task()
    # n = 10: floor(rate * n) = 5, 1, 0, 3 -> max(1, .) = 5, 1, 1, 3 = 10
    assert per_instruction(task, insinfo_sample(task, 10, SCORES, rng())) == {"a": 5, "b": 1, "c": 1, "d": 3}
    # n = 13: 6 (capped at 5), 2, 1, 4 = 12; one top-up, highest rate first: a is full, so d
    assert per_instruction(task, insinfo_sample(task, 13, SCORES, rng())) == {"a": 5, "b": 2, "c": 1, "d": 5}


def test_trimming_never_removes_an_instructions_last_instance():
    task = make_task()
    only_a = {"a": 10.0}
    # n = 4 = #instructions: a gets min(5, 4), the others 1 each = 7; trimmed down to one each
    assert per_instruction(task, insinfo_sample(task, 4, only_a, rng())) == {"a": 1, "b": 1, "c": 1, "d": 1}
    assert per_instruction(task, insinfo_sample(task, 5, only_a, rng())) == {"a": 2, "b": 1, "c": 1, "d": 1}


def test_zero_scores_fall_back_to_uniform_rates():
    task = make_task({"a": 4, "b": 4})
    assert per_instruction(task, insinfo_sample(task, 6, {}, rng())) == {"a": 3, "b": 3}


@pytest.mark.parametrize("seed", range(4))
def test_invariants_for_every_quota(seed):
    task = make_task()
    for quota in range(0, len(task.train) + 5):
        picks = insinfo_sample(task, quota, SCORES, rng(seed))
        assert len(picks) == min(quota, len(task.train))
        assert len(set(picks)) == len(picks) and picks == sorted(picks)
        counts = per_instruction(task, picks)
        if quota >= len(SIZES):
            assert set(counts) == set(SIZES)  # at least one instance of every instruction
        assert all(counts[k] <= SIZES[k] for k in counts)
        assert picks == insinfo_sample(task, quota, SCORES, rng(seed))  # same generator, same choice


def test_ties_are_broken_by_the_generator():
    task = make_task({"a": 2, "b": 2, "c": 2})
    chosen = {next(iter(per_instruction(task, insinfo_sample(task, 1, {}, rng(s))))) for s in range(20)}
    assert len(chosen) > 1


def test_uniform_and_spread_samples():
    task = make_task()
    for quota in (0, 3, 15, 40):
        u = uniform_sample(task, quota, rng())
        assert len(u) == min(quota, 15) and len(set(u)) == len(u)
    names, groups = instruction_groups(task)
    assert names == ["a", "b", "c", "d"]
    picks = spread_sample(groups, [3, 0, 1, 2], 6, rng())
    assert per_instruction(task, picks) == {"d": 2, "a": 2, "b": 1, "c": 1}
    assert len(spread_sample(groups, [0, 1, 2, 3], 99, rng())) == 15


def test_random_replay_spends_the_whole_budget_when_a_task_stores_less_than_b(tmp_path):
    """Issue 21, defect 3: random took min(b, stored) per task and left the rest unspent."""
    from citune.config import load_config
    from citune.replay import StageContext, get_strategy
    from citune.types import Instance, Stream, Task

    sizes = [2, 10, 10]
    tasks = [Task(f"t{i}", [Instance("I", f"{i}-{j}", ("o",), f"t{i}", uid=f"{i}-{j}") for j in range(n)], [])
             for i, n in enumerate(sizes)] + [Task("now", [Instance("I", "x", ("o",), "now", uid="x")], [])]
    cfg = load_config(None, ["replay.strategy=random", "replay.per_task=4"])
    records = get_strategy("random", cfg).select(StageContext(cfg, Stream(tasks), 3, tmp_path))
    counts = [sum(r.instance.task == f"t{i}" for r in records) for i in range(3)]
    assert sum(counts) == 12 and counts == [2, 5, 5]
    assert len({r.instance.uid for r in records}) == 12
