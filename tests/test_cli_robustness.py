"""Interruptions and command-line mistakes, through the real CLI in a subprocess: the exit code, one
line, no traceback, and nothing left behind that blocks a corrected rerun."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from citune.io import read_json

TINY = Path(__file__).resolve().parents[1] / "examples" / "tiny.yaml"


def citune(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "citune", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def one_line_error(result, code=2, *needles):
    err = result.stderr.strip()
    assert result.returncode == code, (result.returncode, err)
    assert "Traceback" not in err and "internal error" not in err, err
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def test_a_config_mistake_is_reported_before_the_training_stack_is_imported(tmp_path):
    """`citune run` checks its config first: importing Accelerate, transformers' trainer code and the report
    takes about 8 s, and a typo should not wait for it."""
    probe = ("import sys\nfrom citune.cli import main\nsys.argv = ['citune', 'run', sys.argv[1], '-o', sys.argv[2], "
             "'train.batch_size=0']\ntry:\n    main()\nexcept SystemExit as e:\n    "
             "print(e.code, sorted(m for m in ('accelerate', 'peft', 'citune.runs.runner') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe, str(TINY), str(tmp_path / "run")], capture_output=True,
                            text=True, timeout=300)
    assert result.stdout.split("\n")[-2] == "2 []", (result.stdout, result.stderr)
    assert "train.batch_size" in result.stderr and not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """An uninterrupted tiny run: the reference every resumed run must equal."""
    out = tmp_path_factory.mktemp("reference") / "run"
    result = citune("run", TINY, "-o", out, "-q")
    assert result.returncode == 0, result.stderr
    return out


def _wait_for_stage(run_dir: Path, index: int, process: subprocess.Popen, timeout: float = 120) -> None:
    manifest, deadline = run_dir / "manifest.json", time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            stages = json.loads(manifest.read_text())["stages"]
        except (OSError, ValueError):  # not written yet
            stages = []
        if stages and stages[index]["status"] == "running":
            return
        time.sleep(0.02)
    raise AssertionError(f"stage {index} never started")


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_stage_2_exits_non_zero_and_the_run_resumes_to_the_same_metrics(
        tmp_path, finished_run, signum, code):
    out = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "citune", "run", str(TINY), "-o", str(out), "-q"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_stage(out, 2, process)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == code, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert signal.Signals(signum).name in err and f"citune run -o {out} --resume" in err, err
    stages = read_json(out / "manifest.json")["stages"]
    assert [s["status"] for s in stages[:2]] == ["done", "done"] and stages[2]["status"] != "done"
    assert not (out / "metrics.json").exists() or read_json(out / "manifest.json")["finished"] is None

    resumed = citune("run", "-o", out, "--resume", "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "metrics.json").read_bytes() == (finished_run / "metrics.json").read_bytes()


def test_a_run_killed_between_its_last_stage_and_its_report_is_finished_by_resume(tmp_path, finished_run):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    manifest = read_json(out / "manifest.json")
    manifest["finished"] = None
    (out / "manifest.json").write_text(json.dumps(manifest))
    for name in ("metrics.json", "report.md", "report.html"):
        (out / name).unlink()
    result = citune("run", "-o", out, "--resume", "-q")
    assert result.returncode == 0, result.stderr
    assert read_json(out / "manifest.json")["finished"] is not None
    assert (out / "report.html").is_file()
    assert (out / "metrics.json").read_bytes() == (finished_run / "metrics.json").read_bytes()


def test_a_resume_with_another_config_names_the_key_that_differs(tmp_path, finished_run):
    err = one_line_error(citune("run", TINY, "-o", finished_run, "--resume", "replay.per_task=3"), 2,
                         "config.yaml", "replay.per_task: 4 there, 3 now")
    assert "differs" in err


@pytest.mark.parametrize("text", ["", "# only a comment\n\n"])
def test_an_empty_config_file_is_an_error_not_the_embedded_default(tmp_path, text):
    cfg = tmp_path / "empty.yaml"
    cfg.write_text(text)
    one_line_error(citune("run", cfg, "-o", tmp_path / "out"), 2, str(cfg), "no config")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("section, key", [
    ("  tasks: [{name: a, sources: [{path: a.jsonl}]}]", "data.tasks"),
    ("  heldout: [{name: a, sources: [{path: a.jsonl}]}]", "data.heldout"),
    ("  kind: tasks\n  tasks: [{name: a, sources: [{path: a.jsonl}]}]\n  synthetic: {train_per_task: 8}",
     "data.synthetic"),
])
def test_a_data_section_the_kind_does_not_read_is_an_error(tmp_path, section, key):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("model: {name: tiny}\ndata:\n" + section + "\n")
    err = one_line_error(citune("plan", cfg), 2, f"{cfg}: {key}: ", "does not read it")
    assert "data.kind" in err


def test_a_missing_model_path_leaves_nothing_and_the_corrected_run_starts(tmp_path):
    out = tmp_path / "out"
    one_line_error(citune("run", TINY, "-o", out, f"model.name={tmp_path / 'no-model'}"), 2, "no-model")
    assert not out.exists(), "nothing may be written before the inputs are checked"


@pytest.mark.parametrize("below", [False, True])
def test_an_output_path_that_is_or_runs_through_a_file_is_bad_input(tmp_path, below):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    target = blocker / "run" if below else blocker
    one_line_error(citune("run", TINY, "-o", target), 2, str(target))
    one_line_error(citune("compare", TINY, "--strategies", "none", "-o", target), 2, str(target))
    assert blocker.read_text() == "x"


def test_a_json_output_that_is_a_directory_is_bad_input(tmp_path):
    one_line_error(citune("plan", TINY, "--json", tmp_path), 2, str(tmp_path), "directory")


@pytest.mark.parametrize("args, needle", [
    (["plan", TINY, "--json"], "requires an argument"),
    (["run", "--no-such-option"], "No such option"),
    (["no-such-command"], "No such command"),
])
def test_usage_errors_exit_2_as_click_prints_them(args, needle):
    result = citune(*args)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr and "internal error" not in result.stderr and "Traceback" not in result.stderr


def test_compare_with_no_strategy_is_an_error(tmp_path):
    one_line_error(citune("compare", TINY, "--strategies", ",", "-o", tmp_path / "cmp"), 2, "--strategies")
    assert not (tmp_path / "cmp").exists()


def test_compare_with_a_bad_data_file_leaves_no_output_directory(tmp_path):
    data = tmp_path / "a.jsonl"
    data.write_text('{"instruction": "Copy.", "input": \n')
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"model: {{name: tiny}}\ndata:\n  kind: tasks\n  tasks: [{{name: a, sources: [{{path: {data}}}]}}]\n")
    one_line_error(citune("compare", cfg, "--strategies", "none,random", "-o", tmp_path / "cmp"), 2, "a.jsonl")
    assert not (tmp_path / "cmp").exists()


def test_an_unknown_strategy_names_the_config_file(tmp_path):
    one_line_error(citune("plan", TINY, "replay.strategy=nope"), 2, f"{TINY}: replay.strategy: unknown")


@pytest.mark.parametrize("override, line", [
    ("data.test_size=abc", "data.test_size: Input should be a valid number"),
    ("data.tasks=[{name: a, sources: [{path: a.jsonl, cap: 0}]}]", "data.tasks[0].sources[0].cap: Input should be "
     "greater than 0"),
])
def test_config_errors_name_keys_as_citune_does(tmp_path, override, line):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("model: {name: tiny}\ndata:\n  kind: tasks\n  tasks: [{name: a, sources: [{path: a.jsonl}]}]\n")
    err = one_line_error(citune("plan", cfg, override), 2, f"{cfg}: {line}")
    assert ".float" not in err and "more problem" not in err


def test_duplicates_dropped_inside_a_source_are_said_and_stored_in_the_manifest(tmp_path):
    rows = [{"instruction": "Copy.", "input": str(i % 6), "output": str(i % 6)} for i in range(9)]
    data = tmp_path / "a.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"model: {{name: tiny}}\ndata:\n  kind: tasks\n  test_size: 2\n"
                   f"  tasks: [{{name: a, sources: [{{path: {data}}}]}}]\n"
                   "train: {batch_size: 2, max_length: 32}\neval: {max_new_tokens: 2}\nreplay: {strategy: none}\n")
    result = subprocess.run([sys.executable, "-m", "citune", "run", str(cfg), "-o", str(tmp_path / "out")],
                            capture_output=True, text=True, env={**__import__("os").environ, "CITUNE_QUIET": "1"})
    assert result.returncode == 0, result.stderr
    assert "3 exact duplicate instances dropped" in result.stdout + result.stderr
    assert read_json(tmp_path / "out" / "manifest.json")["dropped"] == {
        "a": {"duplicates_dropped": 3, "overlap_dropped": 0}}


def test_export_of_something_that_is_no_run_is_one_line(tmp_path):
    one_line_error(citune("export", tmp_path, "-o", tmp_path / "model"), 2, str(tmp_path), "not a run directory")
    assert not (tmp_path / "model").exists()
