"""SSR (replay/ssr.py): the in-context prompt and its parse, the filters, clustering to the quota, the
budget spent exactly, and provenance on every record."""
from citune.config import load_config
from citune.replay import StageContext, get_strategy
from citune.replay import ssr as ssr_module
from citune.replay.ssr import first_field, icl_prompt
from citune.types import Instance, Stream, Task


def _stream() -> Stream:
    def task(i):
        return Task(f"t{i}", [Instance("Name the colour.", f"thing {i}-{j}", (f"colour {j}",), f"t{i}", uid=f"{i}-{j}")
                              for j in range(12)], [])
    return Stream([task(0), task(1), task(2)])


def test_prompt_and_parse():
    demos = [Instance("Add.", "1 2", ("3",)), Instance("Add.", "2 2", ("4",))]
    assert icl_prompt(demos, "Add.", "input") == ("Instruction: Add.\nInput: 1 2\nOutput: 3\n\n"
                                                  "Instruction: Add.\nInput: 2 2\nOutput: 4\n\nInstruction: Add.\nInput:")
    assert icl_prompt(demos[:1], "", "instruction").endswith("Output: 3\n\nInstruction:")
    assert first_field(" 5 7\nOutput: 12\n\nInstruction: x") == "5 7"
    assert first_field(" a b\n\nmore") == "a b" and first_field("\n") == ""


def test_candidates_filtered_clustered_and_the_budget_spent(tiny_bundle, tmp_path, monkeypatch):
    cfg = load_config(None, ["model.name=tiny", "replay.strategy=ssr", "replay.per_task=3", "replay.ssr.demos=2",
                             "replay.ssr.pool_factor=2", "train.max_length=48"])
    strategy = get_strategy("ssr", cfg)
    written = iter(["new thing A", "", "new thing A", "new thing B", "x " * 60, "new thing C", "new thing D",
                    "new thing E"] * 20)
    monkeypatch.setattr(strategy, "_complete_base", lambda ctx, prompts, gen: [next(written) for _ in prompts])
    monkeypatch.setattr(strategy, "_answer", lambda ctx, task, demos, items: ["" if "D" in inp else "red"
                                                                              for _, inp in items])
    ctx = StageContext(cfg, _stream(), 2, tmp_path, model=tiny_bundle)
    records = strategy.select(ctx)
    assert len(records) == ctx.budget == 6  # 3 per earlier task
    for r in records:
        x = r.instance
        assert x.instruction and x.outputs and x.uid and x.task in ("t0", "t1")
        if r.info["synthetic"]:
            assert x.source == f"ssr:{x.task}" and x.input in {"new thing A", "new thing B", "new thing C",
                                                               "new thing E"}  # empty, duplicate, too long, no answer
            assert len(r.info["demos"]) == 2 and {"quota", "prototype_rank"} <= set(r.info)
    facts = strategy.stage_facts()
    assert facts["ssr_synthetic"] + facts["ssr_demo_fill"] == 6 and facts["ssr_synthetic"] > 0
    kept = [r.instance.uid for r in records if r.info["synthetic"] and r.instance.task == "t0"]
    assert len(kept) == len(set(kept))


def test_without_usable_candidates_the_demonstrations_fill_the_quota(tiny_bundle, tmp_path, monkeypatch):
    cfg = load_config(None, ["model.name=tiny", "replay.strategy=ssr", "replay.per_task=5", "replay.ssr.demos=2",
                             "replay.ssr.max_rounds=2"])
    strategy = get_strategy("ssr", cfg)
    monkeypatch.setattr(strategy, "_complete_base", lambda ctx, prompts, gen: [""] * len(prompts))
    ctx = StageContext(cfg, _stream(), 1, tmp_path, model=tiny_bundle)
    records = strategy.select(ctx)
    demos = {x.uid for x in strategy.demos(ctx, ctx.stream.tasks[0])}
    assert len(records) == 5 and all(not r.info["synthetic"] and r.instance.uid in demos for r in records)
    assert strategy.stage_facts()["ssr_demo_fill"] == 5


def test_generation_runs_on_the_models(tiny_bundle, tmp_path):
    cfg = load_config(None, ["model.name=tiny", "replay.strategy=ssr", "replay.per_task=2", "replay.ssr.demos=2",
                             "replay.ssr.max_rounds=1", "replay.ssr.max_new_tokens=6", "eval.max_new_tokens=4"])
    ctx = StageContext(cfg, _stream(), 1, tmp_path, model=tiny_bundle)
    first = get_strategy("ssr", cfg).select(ctx)
    assert len(first) == 2 and [r.instance for r in get_strategy("ssr", cfg).select(ctx)] == [r.instance for r in first]
    assert ssr_module.SSR.role == "replay"
