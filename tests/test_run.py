"""End to end on the tiny config: run directory contract, metrics, resume after a kill."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "examples" / "tiny.yaml"


def citune(*args, **kw):
    env = {**os.environ, "CITUNE_QUIET": "1"}
    return subprocess.run([sys.executable, "-m", "citune", *map(str, args)], capture_output=True, text=True,
                          env=env, **kw)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "tiny"
    started = time.perf_counter()
    proc = citune("run", TINY, "-o", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc, time.perf_counter() - started


def test_run_directory_contract(tiny_run):
    out, proc, _ = tiny_run
    metrics = json.loads((out / "metrics.json").read_text())
    K = len(metrics["tasks"])
    assert K == 3 and len(metrics["matrix"]) == K and all(len(r) == K for r in metrics["matrix"])
    assert all(metrics["matrix"][t][j] is not None for t in range(K) for j in range(t + 1))
    for key in ("ap", "bwt", "fwt", "forgetting", "relative_gain"):
        assert isinstance(metrics[key], (int, float)), key
    for key in ("heldout", "heldout_matrix", "rg_by_stage", "p_score", "v_score"):
        assert key in metrics
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["status"] for s in manifest["stages"]] == ["done"] * (K + 1)
    assert (out / "config.yaml").is_file()
    for i, name in enumerate(metrics["tasks"], 1):
        stage = out / "stages" / f"{i:02d}-{name}"
        for f in ("replay.jsonl", "eval.json", "train_log.jsonl"):
            assert (stage / f).is_file(), stage / f
    replay = [json.loads(x) for x in (out / "stages" / f"03-{metrics['tasks'][2]}" / "replay.jsonl").read_text().splitlines()]
    assert len(replay) == 2 * 4 and {r["strategy"] for r in replay} == {"random"}
    assert {"task", "instruction", "input", "output", "quota"} <= set(replay[0])
    assert "final AP" in proc.stdout and "ROUGE-L" in proc.stdout


def test_resume_on_a_finished_run_does_nothing(tiny_run):
    out, _, _ = tiny_run
    before = (out / "metrics.json").read_text()
    proc = citune("run", "--resume", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "metrics.json").read_text() == before


def test_rerun_without_resume_is_refused(tiny_run):
    out, _, _ = tiny_run
    proc = citune("run", TINY, "-o", out)
    assert proc.returncode == 2 and "--resume" in proc.stderr


def run_and_kill(out: Path, stage: int, *overrides: str) -> None:
    """Start `citune run` on the tiny config and SIGKILL it while stage `stage` is running."""
    env = {**os.environ, "CITUNE_QUIET": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "citune", "run", str(TINY), "-o", str(out), *overrides],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = out / "manifest.json"
    deadline = time.time() + 240
    killed = False
    while time.time() < deadline and proc.poll() is None:
        try:
            stages = json.loads(manifest.read_text())["stages"]
        except (FileNotFoundError, json.JSONDecodeError):
            stages = []
        if len(stages) > stage and stages[stage]["status"] == "running":
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.01)
    proc.wait()
    assert killed, f"the run ended before stage {stage} could be interrupted"
    stages = json.loads(manifest.read_text())["stages"]
    assert all(s["status"] == "done" for s in stages[:stage]) and stages[stage]["status"] != "done"


def losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for log in sorted(run.glob("stages/*/train_log.jsonl"))
            for line in log.read_text().splitlines()]


def test_killed_during_stage_two_resumes_to_the_same_metrics(tiny_run, tmp_path):
    reference, _, _ = tiny_run
    out = tmp_path / "killed"
    run_and_kill(out, 2)
    resumed = citune("run", TINY, "--resume", "-o", out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = json.loads((reference / "metrics.json").read_text())
    b = json.loads((out / "metrics.json").read_text())
    assert a == b


def test_a_lora_run_killed_in_its_first_stage_resumes_to_the_same_training(tmp_path):
    """Every process starts torch from a random seed: the LoRA adapters must come from the config's
    seed, or the resumed first stage (another process) trains from other adapters."""
    lora = ("model.finetune=lora", "data.synthetic.families=[sentiment,parity]", "train.epochs=2")
    reference = tmp_path / "whole"
    assert citune("run", TINY, "-o", reference, *lora).returncode == 0
    out = tmp_path / "killed"
    run_and_kill(out, 1, *lora)
    resumed = citune("run", TINY, "--resume", "-o", out, *lora)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert losses(out) == losses(reference) and len(losses(reference)) > 2
    assert json.loads((out / "metrics.json").read_text()) == json.loads((reference / "metrics.json").read_text())


def test_nan_loss_stops_with_a_clear_error(tmp_path):
    out = tmp_path / "nan"
    proc = citune("run", TINY, "model.finetune=full", "train.lr=1e30", "train.max_grad_norm=1e30", "-o", out)
    assert proc.returncode == 1, proc.stderr
    assert "loss is" in proc.stderr and "--resume" in proc.stderr and "Traceback" not in proc.stderr
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    assert stages[0]["status"] == "done" and stages[1]["status"] == "running"


def _eval_files(run_dir):
    return sorted(Path(run_dir).glob("stages/*/eval.json"))


def test_score_run_dir_rescores_stored_predictions(tiny_run, tmp_path):
    """A scorer fix reaches an old run: rows scored by the old tokenizer (Chinese identical pair: 0)
    are rescored, the summaries, metrics.json and the report follow; an unchanged run stays the same."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run[0], run)
    before = json.loads((run / "metrics.json").read_text())
    proc = citune("score", run)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "0 primary scores changed" in proc.stdout
    after = json.loads((run / "metrics.json").read_text())
    assert after["matrix"] == before["matrix"] and after["ap"] == before["ap"]
    # plant an identical Chinese answer scored 0, as rouge-score's default tokenizer scored it
    last = _eval_files(run)[-1]
    ev = json.loads(last.read_text())
    task = next(iter(ev["tasks"]))
    row = ev["predictions"][task][0]
    row.update(prediction="支持", references=["支持"], rougeL=0.0)
    n = len(ev["predictions"][task])
    ev["tasks"][task]["rougeL"] = ev["tasks"][task]["score"] = sum(r["rougeL"] for r in ev["predictions"][task]) / n
    last.write_text(json.dumps(ev))
    (run / "report.md").unlink()
    out = tmp_path / "metrics.json"
    proc = citune("score", run, "--json", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "1 primary scores changed" in proc.stdout
    rescored = json.loads(last.read_text())
    assert rescored["predictions"][task][0]["rougeL"] == 100.0
    expected = sum(r["rougeL"] for r in rescored["predictions"][task]) / n
    assert rescored["tasks"][task]["score"] == pytest.approx(expected)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["matrix"][-1][list(metrics["tasks"]).index(task)] == pytest.approx(expected)
    assert json.loads(out.read_text()) == metrics and (run / "report.md").is_file()


def test_score_run_dir_mistakes_exit_2(tiny_run, tmp_path):
    proc = citune("score", tiny_run[0], "--metric", "rougeL")
    assert proc.returncode == 2 and "--metric" in proc.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = citune("score", empty)
    assert proc.returncode == 2 and "no manifest.json" in proc.stderr and "Traceback" not in proc.stderr


TRACE500 = ROOT.parent / "shared" / "data" / "trace500"


@pytest.mark.skipif(not TRACE500.is_dir(), reason="../shared/data/trace500 is not beside the checkout")
def test_trace_preset_runs_with_the_tiny_model(tmp_path):
    """examples/trace.yaml end to end (tiny model, smaller caps): each task's eval.json names its scorer
    and holds that score for every prediction; the matrix holds the primary scores."""
    out = tmp_path / "trace"
    proc = citune("run", ROOT / "examples" / "trace.yaml", "model.name=tiny", "data.max_train_per_task=4",
                  "eval.max_test_per_task=3", "eval.max_new_tokens=4", "train.max_length=192",
                  "eval.max_prompt_length=192", "replay.per_task=2", "-o", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["scorers"]["C-STANCE"] == "option_accuracy" and metrics["scorers"]["Py150"] == "edit_similarity"
    last = json.loads(sorted(out.glob("stages/07-*/eval.json"))[0].read_text())
    for name, summary in last["tasks"].items():
        assert summary["scorer"] == metrics["scorers"][name]
        assert all(summary["scorer"] in row for row in last["predictions"][name])
        assert summary["truncated"] >= 0 and summary["hit_max_new_tokens"] >= 0
    assert [row[-1] for row in metrics["matrix"]][-1] == last["tasks"]["20Minuten"]["score"]
    assert "option_accuracy" in (out / "report.md").read_text()
