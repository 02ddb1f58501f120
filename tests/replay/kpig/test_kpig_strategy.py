"""KPIG replay: IG^learned in the state, quotas (exact budget, caps, drop vs softmax), records, objective, variants."""
import json

import pytest
import torch

from citune.config import load_config
from citune.types import Instance, Stream, Task
from citune.replay.kpig.objective import IGObjective
from citune.replay import StageContext, get_strategy
from citune.replay.quota import allocate


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is much faster on a shared machine
    yield
    torch.set_num_threads(threads)


def make_task(name: str, instruction: str, n: int, answers: list[str]) -> Task:
    train = [Instance(instruction, f"{name} input {i}", (answers[i % len(answers)],), name, name, f"{name}-{i}")
             for i in range(n)]
    return Task(name, train, [])


@pytest.fixture()
def stream():
    return Stream([
        make_task("sentiment", "Classify the review. Answer with 'good' or 'bad'.", 5, ["good", "bad"]),
        make_task("colours", "Name the colour of the object. Your answer must be one word.", 12,
                  ["red", "blue", "green", "white"]),
        make_task("current", "Copy the input. Return it unchanged.", 6, ["x"]),
    ])


def config(*extra):
    return load_config(None, ["model.name=tiny", "replay.strategy=kpig", "replay.per_task=4", "replay.kpig.probe=4",
                              "replay.kpig.pool=6", "train.max_length=64", *extra])


def context(cfg, stream, stage, bundle, state, tmp_path):
    return StageContext(cfg=cfg, stream=stream, stage=stage, cache_dir=tmp_path, model=bundle, state=state)


def test_ig_learned_then_selection(stream, tiny_bundle, tmp_path):
    cfg = config()
    strategy = get_strategy("kpig", cfg)
    state: dict = {}
    assert strategy.select(context(cfg, stream, 0, tiny_bundle, state, tmp_path)) == []
    for stage in (0, 1):
        strategy.after_stage(context(cfg, stream, stage, tiny_bundle, state, tmp_path))
    learned = state["kpig"]["ig_learned"]
    assert set(learned) == {"sentiment", "colours"}
    json.dumps(state)  # the state stays JSON-able
    ctx = context(cfg, stream, 2, tiny_bundle, state, tmp_path)
    records = strategy.select(ctx)
    assert len(records) == ctx.budget == 8
    by_task: dict = {}
    for r in records:
        by_task.setdefault(r.instance.task, []).append(r)
        assert {"ig", "ig_learned", "ig_task", "quota", "key_parts"} <= set(r.info)
        assert r.info["ig_learned"] == learned[r.instance.task]
        assert r.info["key_parts"] and all(p in r.instance.instruction for p in r.info["key_parts"])
        json.dumps(r.to_record("kpig", cfg.seed))
    for name, recs in by_task.items():
        assert all(r.info["quota"] == len(recs) for r in recs)
        assert len(recs) <= len(stream.tasks[0 if name == "sentiment" else 1].train)
        assert len({r.instance.uid for r in recs}) == len(recs)
    # Lowest IG first: every selected instance scores no higher than the unselected part of the pool.
    colours = stream.tasks[1]
    recs = by_task.get("colours", [])
    if recs:
        pool = strategy.pool(ctx, colours, len(recs))
        scores = strategy.scores(ctx, colours, [colours.train[i] for i in pool])
        chosen = {r.instance.uid for r in recs}
        worst_chosen = max(r.info["ig"] for r in recs)
        rest = [s for i, s in zip(pool, scores) if colours.train[i].uid not in chosen]
        assert all(worst_chosen <= s + 1e-6 for s in rest)
    again = get_strategy("kpig", cfg).select(context(cfg, stream, 2, tiny_bundle, state, tmp_path))
    assert [r.instance.uid for r in again] == [r.instance.uid for r in records]  # deterministic


def test_probe_of_the_task_just_learned_is_not_scored_twice(stream, tiny_bundle, tmp_path):
    """after_stage(t-1) and select(t) use the same model: the probe scores are reused, with the same result."""
    cfg = config()
    strategy = get_strategy("kpig", cfg)
    state: dict = {}
    for stage in (0, 1):
        strategy.after_stage(context(cfg, stream, stage, tiny_bundle, state, tmp_path))
    scored: list[str] = []
    real = strategy.scores

    def counting(ctx, task, instances):
        scored.extend(x.uid for x in instances)
        return real(ctx, task, instances)

    strategy.scores = counting
    reused = strategy.select(context(cfg, stream, 2, tiny_bundle, state, tmp_path))
    colours = stream.tasks[1]
    probe = {colours.train[i].uid for i in strategy.order(context(cfg, stream, 2, tiny_bundle, state, tmp_path),
                                                          colours)[:4]}
    assert not probe & set(scored)  # colours was learned last: its probe came from after_stage
    assert any(uid.startswith("sentiment") for uid in scored)  # the older task is scored anew
    fresh_state = {"kpig": {"ig_learned": state["kpig"]["ig_learned"]}}
    fresh = get_strategy("kpig", cfg).select(context(cfg, stream, 2, tiny_bundle, fresh_state, tmp_path))
    assert [(r.instance.uid, r.info["ig"]) for r in reused] == [(r.instance.uid, r.info["ig"]) for r in fresh]
    # the last task of the stream is never replayed: nothing is scored for it
    last: dict = {}
    strategy.after_stage(context(cfg, stream, 2, tiny_bundle, last, tmp_path))
    assert last == {}


def test_quota_caps_and_exact_budget(stream, tiny_bundle, tmp_path):
    cfg = config()
    state = {"kpig": {"ig_learned": {"sentiment": 100.0, "colours": -100.0}}}
    records = get_strategy("kpig", cfg).select(context(cfg, stream, 2, tiny_bundle, state, tmp_path))
    counts = {name: sum(r.instance.task == name for r in records) for name in ("sentiment", "colours")}
    assert counts == {"sentiment": 5, "colours": 3}  # sentiment wants all 8 but stores 5
    cfg = config("replay.per_task=20")  # more than everything stored: everything, once
    records = get_strategy("kpig", cfg).select(context(cfg, stream, 2, tiny_bundle, state, tmp_path))
    assert len(records) == 17 and len({r.instance.uid for r in records}) == 17


def test_drop_and_softmax_weights():
    drop = get_strategy("kpig", config())
    w = drop.weights([0.1, 0.5, 0.3], [0.9, 0.6, None])
    assert w == pytest.approx([0.8, 0.1, 1e-3])
    assert drop.weights([0.5], [0.2]) == [1e-3]  # IG grew: ε
    assert allocate(9, w, [100] * 3) == [8, 1, 0]
    soft = get_strategy("kpig", config("replay.kpig.quota=softmax", "replay.kpig.tau=0.5"))
    w = soft.weights([0.1, 0.5, 0.3], [None, None, None])
    import math
    ref = [math.exp(-v / 0.5) for v in (0.1, 0.5, 0.3)]
    assert [a / w[0] for a in w] == pytest.approx([r / ref[0] for r in ref])
    assert allocate(9, w, [100] * 3) == [4, 2, 3]  # lowest IG, largest share


def test_objective_and_variants(stream, tiny_bundle, tmp_path):
    cfg = config("replay.kpig.variants=2")
    strategy = get_strategy("kpig", cfg)
    state: dict = {}
    ctx = context(cfg, stream, 2, tiny_bundle, state, tmp_path)
    replay = strategy.select(ctx)
    originals = [r.instance for r in replay]
    data = strategy.training_data(ctx, replay)
    n_current = len(stream.tasks[2].train)
    assert len(data) == n_current + len(replay)
    assert [ex.is_replay for ex in data] == [False] * n_current + [True] * len(replay)
    assert [ex.instance for ex in data[n_current:]] == originals  # the instances themselves are untouched
    assert [r.instance for r in replay] == originals
    assert any(ex.shown_instruction != o.instruction for ex, o in zip(data[n_current:], originals))
    stats = state["kpig"]["diversity"]["2"]
    assert stats["variants"] == 2 * stats["instructions"] and stats["rejected"] == 0
    obj = strategy.objective(ctx)
    assert isinstance(obj, IGObjective)
    for ex in data:
        row = obj.encode(ex, 64)
        assert any(v != -100 for v in row["masked_labels"])  # variants are masked too
    assert get_strategy("kpig", config("replay.kpig.objective=false")).objective(ctx) is None


def test_plan_needs_no_model(stream, tmp_path):
    cfg = config()
    plan = get_strategy("kpig", cfg).plan(StageContext(cfg=cfg, stream=stream, stage=2, cache_dir=tmp_path))
    assert plan["budget"] == 8 and plan["quotas"] is None


def test_the_pool_is_drawn_afresh_per_stage_and_exceeds_the_quota(stream, tmp_path):
    """Issue 21, defect 2: the pool was a fixed prefix no larger than the probe, so a quota at least the
    pool's size replayed that prefix at every stage, whatever the IG."""
    cfg = config("replay.kpig.pool=4", "replay.kpig.probe=4")
    strategy = get_strategy("kpig", cfg)
    colours = stream.tasks[1]  # 12 stored
    at = {stage: strategy.pool(StageContext(cfg, stream, stage, tmp_path), colours, 4) for stage in (2, 3, 4)}
    assert all(len(p) == 8 and len(set(p)) == 8 for p in at.values())  # 2 x the quota of 4, more than the quota
    assert len({tuple(sorted(p)) for p in at.values()}) > 1  # another draw at another stage
    assert sorted(strategy.pool(StageContext(cfg, stream, 2, tmp_path), colours, 10)) == list(range(12))
