"""InsCL and its baselines end to end on a hand-built stream: the budget, provenance, distances, plans."""
import json

import numpy as np
import pytest

from citune.config import load_config
from citune.types import Instance, Stream, Task, instance_uid
from citune.replay import StageContext, get_strategy
from citune.models.embeddings import embed_texts, sentence_embeddings
from citune.replay.inscl.strategy import quota_weights
from citune.runs.rundir import RunDir
from citune.replay.inscl.insinfo import insinfo_scores
from citune.replay.planning import plan_stream, render_plan
from citune.replay.quota import allocate
from citune.replay.inscl.tagging import instruction_tags
from citune.replay.inscl.wasserstein import stream_distance_matrix, task_support, w1

STRATEGIES = ["inscl", "inscl-dynamic", "inscl-insinfo", "prototype-data", "prototype-instruction",
              "diverse-instruction"]
INSCL = {"inscl", "inscl-dynamic", "inscl-insinfo"}


def make_task(name, sizes):
    train = []
    for ins, n in sizes.items():
        for k in range(n):
            inp, out = f"{name} example {k}", (f"answer {k}",)
            train.append(Instance(ins, inp, out, name, name, instance_uid(ins, inp, out, name)))
    return Task(name, train, train[:2])


def make_stream():
    return Stream([
        make_task("sentiment", {"Classify the sentiment of the tweet as positive or negative.": 10,
                                "Is the movie review positive or negative? Answer with one word.": 10}),
        make_task("arithmetic", {"Add the two numbers and return the sum.": 6,
                                 "Compute the product of the given integers.": 6,
                                 "Subtract the second number from the first one.": 1}),
        make_task("lists", {"Reverse the order of the words in the list.": 8,
                            "Sort the numbers in ascending order.": 8}),
        make_task("sql", {"Write an SQL query that answers the question about the table.": 12}),
    ])


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def config(name, *overrides):
    return load_config(None, [f"replay.strategy={name}", *overrides])


def check_provenance(name, ctx, records):
    previous = {id(x): t.name for t in ctx.previous for x in t.train}
    assert len({r.instance.uid for r in records}) == len(records)
    per_task = {}
    for r in records:
        assert previous[id(r.instance)] == r.instance.task  # a stored instance of a previous task
        per_task.setdefault(r.instance.task, []).append(r)
    for task, recs in per_task.items():
        assert {r.info["quota"] for r in recs} == {len(recs)}
    for r in records:
        row = r.to_record(name, ctx.seed)
        assert {"task", "instruction", "input", "output", "strategy", "quota", "seed"} <= set(row)
        if name in INSCL:
            assert isinstance(row["w_distance"], float) and isinstance(row["insinfo"], float)
            assert all(isinstance(t, str) for t in row["tags"])
        json.dumps(row)


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_spends_exactly_the_random_baselines_budget(name, cache):
    cfg, stream = config(name, "replay.per_task=7"), make_stream()
    strategy, baseline = get_strategy(name, cfg), get_strategy("random", cfg)
    for stage in range(len(stream.tasks)):
        ctx = StageContext(cfg, stream, stage, cache)
        records = strategy.select(ctx)
        assert len(records) == ctx.budget == len(baseline.select(ctx))
        check_provenance(name, ctx, records)


@pytest.mark.parametrize("name", STRATEGIES)
def test_the_budget_is_capped_only_by_the_stored_data(name, cache):
    cfg, stream = config(name, "replay.per_task=15"), make_stream()
    ctx = StageContext(cfg, stream, 3, cache)  # budget 45, 49 stored (20 + 13 + 16)
    assert len(get_strategy(name, cfg).select(ctx)) == 45
    cfg = config(name, "replay.per_task=40")
    ctx = StageContext(cfg, stream, 3, cache)  # budget 120, 49 stored
    records = get_strategy(name, cfg).select(ctx)
    assert len(records) == 49
    check_provenance(name, ctx, records)


def test_inscl_quotas_follow_the_distances_and_the_matrix_is_recorded(cache, tmp_path):
    cfg, stream = config("inscl", "replay.per_task=10"), make_stream()
    ctx = StageContext(cfg, stream, 3, cache, artifacts=RunDir(tmp_path))
    records = get_strategy("inscl", cfg).select(ctx)
    stored = json.loads((tmp_path / "inscl_distances.json").read_text())
    matrix = stream_distance_matrix(cfg, stream, cache)
    assert stored["tasks"] == stream.names
    assert np.array(stored["matrix"]) == pytest.approx(matrix, abs=1e-6)
    assert matrix == pytest.approx(matrix.T) and np.diag(matrix) == pytest.approx(0)
    dist = [matrix[j, 3] for j in range(3)]
    quotas = allocate(30, dist, [20, 13, 16])
    pool = [s for t in stream.tasks for s in t.instructions()]
    scores = insinfo_scores(instruction_tags(pool, cfg.replay.inscl, cache))
    for j, task in enumerate(stream.tasks[:3]):
        recs = [r for r in records if r.instance.task == task.name]
        assert len(recs) == quotas[j]
        for r in recs:
            assert r.info["w_distance"] == pytest.approx(dist[j], abs=1e-6)
            assert r.info["insinfo"] == pytest.approx(scores[r.instance.instruction], abs=1e-6)
    get_strategy("inscl", cfg).select(StageContext(cfg, stream, 1, cache))  # no artifacts: nothing written
    assert [p.name for p in tmp_path.iterdir()] == ["inscl_distances.json"]


def test_task_distance_with_both_marginals_on_real_embeddings(cache):
    a_ins, b_ins = "Add the two numbers.", "Translate the sentence into French."
    a, b = make_task("a", {a_ins: 3, b_ins: 1}), make_task("b", {a_ins: 2})
    x = sentence_embeddings([a_ins, b_ins], cache)
    gap = 1.0 - float(x[0].astype(np.float64) @ x[1])
    for marginals, share in (("instances", 0.25), ("uniform", 0.5)):
        cfg = config("inscl", f"replay.inscl.marginals={marginals}")
        d = w1(task_support(cfg, a, cache), task_support(cfg, b, cache))
        assert d == pytest.approx(share * gap, abs=1e-5)


def test_quota_weights_direction():
    assert quota_weights([0.2, 0.5]) == pytest.approx([0.2, 0.5])
    assert quota_weights([0.2, 0.5], "similar") == pytest.approx([5.0, 2.0])
    assert quota_weights([0.0, 0.5], "similar") == [1.0, 0.0]


def test_direction_similar_gives_more_to_the_closer_task(cache):
    stream = make_stream()
    quotas = {}
    for direction in ("dissimilar", "similar"):
        cfg = config("inscl", "replay.per_task=10", f"replay.inscl.direction={direction}")
        records = get_strategy("inscl", cfg).select(StageContext(cfg, stream, 3, cache))
        quotas[direction] = [sum(r.instance.task == t.name for r in records) for t in stream.tasks[:3]]
    assert sum(quotas["similar"]) == sum(quotas["dissimilar"]) == 30
    order = np.argsort(quotas["dissimilar"], kind="stable")
    assert quotas["similar"][order[0]] >= quotas["similar"][order[-1]]


@pytest.mark.parametrize("name", STRATEGIES)
def test_the_choice_is_the_same_on_every_run(name, cache):
    cfg, stream = config(name, "replay.per_task=7"), make_stream()
    first = [r.instance.uid for r in get_strategy(name, cfg).select(StageContext(cfg, stream, 3, cache))]
    again = [r.instance.uid for r in get_strategy(name, cfg).select(StageContext(cfg, stream, 3, cache))]
    assert first == again


def test_plans(cache):
    cfg, stream = config("inscl", "replay.per_task=7"), make_stream()
    plans = plan_stream(cfg, stream, cache)
    json.dumps(plans)
    assert [p["stage"] for p in plans] == [1, 2, 3, 4] and [p["budget"] for p in plans] == [0, 7, 14, 21]
    last = plans[3]
    assert [e["task"] for e in last["previous"]] == stream.names[:3]
    assert sum(e["quota"] for e in last["previous"]) == 21
    matrix = stream_distance_matrix(cfg, stream, cache)
    assert [e["distance"] for e in last["previous"]] == pytest.approx(matrix[:3, 3], abs=1e-6)
    first = last["previous"][1]["first"]
    assert first and [f["insinfo"] for f in first] == sorted((f["insinfo"] for f in first), reverse=True)
    text = render_plan(plans)
    assert "Stage 4: sql" in text and "arithmetic" in text and "no replay" in text
    for name in ("random", "prototype-data", "diverse-instruction"):
        other = plan_stream(config(name, "replay.per_task=7"), stream, cache)
        assert sum(e["quota"] for e in other[3]["previous"]) == 21
        assert render_plan(other)


def test_base_mean_embeddings(tiny_cfg, tiny_bundle, tmp_path):
    from citune.paths import cache_root
    from citune.models import embeddings

    text = "Add the two numbers."
    got = embed_texts([text, text], tmp_path, "base-mean", tiny_cfg.model, tiny_bundle)
    ids = tiny_bundle.tokenizer(text, add_special_tokens=False)["input_ids"]
    table = tiny_bundle.model.get_input_embeddings().weight.detach().double().numpy()
    want = table[ids].mean(axis=0)
    want /= np.linalg.norm(want)
    assert got.dtype == np.float32 and got.shape == (2, table.shape[1])
    assert got[0] == pytest.approx(want, abs=1e-5) and got[1] == pytest.approx(want, abs=1e-5)
    assert list((tmp_path / "embeddings").glob("*.npz"))
    assert embed_texts([text], tmp_path, "base-mean", tiny_cfg.model)[0] == pytest.approx(want, abs=1e-5)  # cached
    embeddings._TABLES.clear()  # without a bundle the base model is loaded from disk: the same vector
    fresh = embeddings._encode_base_mean([text, ""], tiny_cfg.model, cache_root(), None)
    assert fresh[0] == pytest.approx(want, abs=1e-5)
    assert not fresh[1].any()  # no tokens: the zero vector
