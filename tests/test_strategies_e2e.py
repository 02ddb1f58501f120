"""Every registered strategy, end to end on the tiny config: run directory, provenance, metrics; the
field's baselines also killed during stage 2 and resumed to the same metrics.json."""
import json
from pathlib import Path

import pytest

from citune.config import load_config
from citune.replay import get_strategy, strategy_names
from citune.runs.runner import run_stream

TINY = Path(__file__).resolve().parents[1] / "examples" / "tiny.yaml"
PROVENANCE = {
    "inscl": {"w_distance", "insinfo", "tags"},
    "inscl-dynamic": {"w_distance", "insinfo", "tags"},
    "inscl-insinfo": {"w_distance", "insinfo", "tags"},
    "kpig": {"ig", "ig_learned"},
    "ssr": {"synthetic", "demos"},
}
BASELINES = ["ewc", "lwf", "agem", "olora", "inclora", "ssr", "inscl+ewc"]
NEEDS_LORA = {"olora", "inclora"}


def _replay(out: Path, stage: int) -> list[dict]:
    path = next((out / "stages").glob(f"{stage:02d}-*")) / "replay.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


# SSR generates with the tiny random model, which never stops before its bound: short bounds, one round.
QUICK = {"ssr": ["replay.ssr.max_new_tokens=8", "replay.ssr.max_rounds=1", "replay.ssr.pool_factor=1.5"]}


def _config(name: str, *more: str):
    lora = ["model.finetune=lora"] if NEEDS_LORA & set(name.split("+")) else []
    quick = [o for part in name.split("+") for o in QUICK.get(part, [])]
    return load_config(TINY, [f"replay.strategy={name}", "train.epochs=1", "run.quiet=true", *lora, *quick, *more])


def _check_run(name: str, cfg, out: Path, metrics: dict) -> None:
    assert all(metrics["matrix"][t][j] is not None for t in range(3) for j in range(t + 1))
    assert isinstance(metrics["ap"], float) and isinstance(metrics["bwt"], float)
    rows = _replay(out, 3)
    stored = cfg.data.synthetic.train_per_task
    replays = get_strategy(name, cfg).parts[0].role == "replay"
    expected = {"multitask": 2 * stored, "none": 0}.get(name, 2 * cfg.replay.per_task if replays else 0)
    assert len(rows) == expected
    need = {"task", "instruction", "input", "output", "strategy", "quota"} | PROVENANCE.get(name, set())
    assert all(need <= set(r) for r in rows), need - set(rows[0])
    assert {r["task"] for r in rows} <= set(metrics["tasks"][:2])
    manifest = json.loads((out / "manifest.json").read_text())
    assert [m["name"] for m in manifest["methods"]] == name.split("+")
    if name == "random":  # issue 21, defect 7: each record names the seed of the generator that drew it
        _check_draw_seeds(cfg, rows)


def _check_draw_seeds(cfg, rows: list[dict]) -> None:
    import numpy as np

    from citune.data import build_stream

    stream = build_stream(cfg)
    for task in stream.tasks[:2]:
        mine = [r for r in rows if r["task"] == task.name]
        assert len({r["draw_seed"] for r in mine}) == 1 and mine[0]["seed"] == cfg.seed
        picks = np.random.default_rng(mine[0]["draw_seed"]).choice(len(task.train), size=len(mine), replace=False)
        assert [r["uid"] for r in mine] == [task.train[i].uid for i in sorted(picks)]


@pytest.mark.parametrize("name", [n for n in strategy_names() if n != "kpig" and n not in BASELINES])
def test_strategy_runs_end_to_end(name, tmp_path):
    cfg = _config(name)
    _check_run(name, cfg, tmp_path / name, run_stream(cfg, tmp_path / name))


@pytest.mark.parametrize("name", BASELINES)
def test_a_baseline_killed_during_stage_2_resumes_to_the_same_metrics(name, tmp_path, monkeypatch):
    import citune.runs.runner as runner

    cfg = _config(name)
    whole = run_stream(cfg, tmp_path / "whole")
    _check_run(name, cfg, tmp_path / "whole", whole)
    real, calls = runner.train_stage, []

    def killed_in_stage_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "train_stage", killed_in_stage_2)
    with pytest.raises(KeyboardInterrupt):
        run_stream(_config(name), tmp_path / "cut")
    monkeypatch.setattr(runner, "train_stage", real)
    run_stream(_config(name), tmp_path / "cut", resume=True)
    assert (tmp_path / "cut" / "metrics.json").read_bytes() == (tmp_path / "whole" / "metrics.json").read_bytes()


def test_kpig_writes_p_score_and_v_score(tmp_path):
    cfg = load_config(TINY, ["replay.strategy=kpig", "run.quiet=true"])
    metrics = run_stream(cfg, tmp_path / "kpig")
    assert isinstance(metrics["p_score"], float) and isinstance(metrics["v_score"], float)
    assert len(metrics["v_score_by_stage"]) == 3 and len(metrics["p_score_by_stage"]) == 3
    rows = _replay(tmp_path / "kpig", 3)
    assert len(rows) == 8 and all({"ig", "ig_learned", "quota"} <= set(r) for r in rows)
    evals = json.loads(next((tmp_path / "kpig" / "stages").glob("03-*")).joinpath("eval.json").read_text())
    assert evals["v_score"] is not None and evals["v_checked"] > 0 and evals["p_score"] is not None
