"""Every registered strategy, end to end on the tiny config: run directory, provenance, metrics."""
import json
from pathlib import Path

import pytest

from citune.config import load_config
from citune.replay import strategy_names
from citune.runs.runner import run_stream

TINY = Path(__file__).resolve().parents[1] / "examples" / "tiny.yaml"
PROVENANCE = {
    "inscl": {"w_distance", "insinfo", "tags"},
    "inscl-dynamic": {"w_distance", "insinfo", "tags"},
    "inscl-insinfo": {"w_distance", "insinfo", "tags"},
    "kpig": {"ig", "ig_learned"},
}


def _replay(out: Path, stage: int) -> list[dict]:
    path = next((out / "stages").glob(f"{stage:02d}-*")) / "replay.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("name", [n for n in strategy_names() if n != "kpig"])
def test_strategy_runs_end_to_end(name, tmp_path):
    cfg = load_config(TINY, [f"replay.strategy={name}", "train.epochs=1", "run.quiet=true"])
    metrics = run_stream(cfg, tmp_path / name)
    assert all(metrics["matrix"][t][j] is not None for t in range(3) for j in range(t + 1))
    rows = _replay(tmp_path / name, 3)
    stored = cfg.data.synthetic.train_per_task
    expected = {"multitask": 2 * stored, "none": 0}.get(name, 2 * cfg.replay.per_task)
    assert len(rows) == expected
    need = {"task", "instruction", "input", "output", "strategy", "quota"} | PROVENANCE.get(name, set())
    assert all(need <= set(r) for r in rows), need - set(rows[0])
    assert {r["task"] for r in rows} <= set(metrics["tasks"][:2])


def test_kpig_writes_p_score_and_v_score(tmp_path):
    cfg = load_config(TINY, ["replay.strategy=kpig", "run.quiet=true"])
    metrics = run_stream(cfg, tmp_path / "kpig")
    assert isinstance(metrics["p_score"], float) and isinstance(metrics["v_score"], float)
    assert len(metrics["v_score_by_stage"]) == 3 and len(metrics["p_score_by_stage"]) == 3
    rows = _replay(tmp_path / "kpig", 3)
    assert len(rows) == 8 and all({"ig", "ig_learned", "quota"} <= set(r) for r in rows)
    evals = json.loads(next((tmp_path / "kpig" / "stages").glob("03-*")).joinpath("eval.json").read_text())
    assert evals["v_score"] is not None and evals["v_checked"] > 0 and evals["p_score"] is not None
