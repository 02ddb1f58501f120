"""The SuperNI quality benchmark's plan (`--dry-run`: no training): its scale validates against the
config schema for every strategy, the stream is cut to the scale's categories, and the projected
time of every run stays within the 15 minutes the scale was chosen for."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from citune.runs.archive import read_archive

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "superni_quality.py"


def dry_run(superni_dir, *args):
    return subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--superni-root", str(superni_dir), *args],
                          capture_output=True, text=True, timeout=600)


def test_default_plan_fits_the_time_per_run(superni_dir):
    proc = dry_run(superni_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "== order curriculum: 8 categories" in out and "== order random: 8 categories" in out
    assert "none, random, inscl, kpig, inscl-dynamic, inscl-insinfo, multitask" in out
    assert out.count("Classification 16/3") == 1  # the curriculum order starts with Classification
    projected = {s: int(m) for s, m in re.findall(r"(?:: |, )([a-z-]+) (\d+)(?=,|;)", out.split("projected")[1])}
    assert set(projected) >= {"none", "random", "inscl", "kpig", "multitask"}
    assert all(m <= 15 for m in projected.values()), projected


def test_powered_design_runs_the_design_question_over_every_seed_before_the_other_methods(superni_dir, tmp_path):
    proc = dry_run(superni_dir, "--design", "powered", "--orders", "curriculum", "--seeds", "1,2",
                   "--results", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    pending = proc.stdout.split("to run, in this order (20): ")[1].splitlines()[0].split(", ")
    assert pending[:9] == ["none seed 1", "random seed 1", "inscl seed 1", "kpig seed 1", "none seed 2",
                           "random seed 2", "inscl seed 2", "kpig seed 2", "multitask seed 1"]
    assert pending[-1] == "olora seed 2"


def test_bad_override_fails_before_any_training(superni_dir):
    proc = dry_run(superni_dir, "--orders", "curriculum", "train.batch_size=0")
    assert proc.returncode == 2
    assert "batch_size" in proc.stderr and "Traceback" not in proc.stderr


def test_smoke_run_stores_results_and_a_new_machine_skips_them(superni_dir, tmp_path):
    """Results are stored apart from the big run directories, one archive per run; a second invocation with those run
    directories gone (a fresh machine) finds the stored run and does not train it again."""
    args = [sys.executable, str(SCRIPT), "--smoke", "--quiet", "--superni-root", str(superni_dir), "--orders",
            "curriculum", "--strategies", "none", "--seeds", "1", "--results", str(tmp_path / "results")]
    first = subprocess.run([*args, "--out", str(tmp_path / "a")], capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    stored = tmp_path / "results" / "curriculum-smoke-2cat"
    files = read_archive(stored / "none-seed1.run.json.gz")  # one compact file per run, not its directory
    assert "metrics.json" in files and any(f.startswith("stages/") and f.endswith("/eval.json") for f in files)
    assert not (stored / "none-seed1").exists()
    assert (stored / "comparison.json").is_file() and (stored / "report.md").is_file()
    second = subprocess.run([*args, "--out", str(tmp_path / "b")], capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "none seed 1: stored already" in second.stdout
    invocations = json.loads((stored / "benchmark.json").read_text())["invocations"]
    assert len(invocations) == 2 and all("cpu_seconds" in i for i in invocations)  # one that ran nothing too
    assert not (tmp_path / "b" / "curriculum-smoke-2cat" / "none-seed1").exists()


TRACE_SCRIPT = ROOT / "benchmarks" / "trace_quality.py"
TRACE500 = ROOT.parent / "shared" / "data" / "trace500"
needs_trace = pytest.mark.skipif(not TRACE500.is_dir(), reason="../shared/data/trace500 is not beside the checkout")


@needs_trace
def test_trace_plan_is_the_five_short_tasks_scored_as_trace_scores_them():
    proc = subprocess.run([sys.executable, str(TRACE_SCRIPT), "--dry-run"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    stream = proc.stdout.split("stream (train/evaluated test, scorer): ")[1].splitlines()[0]
    assert [part.split()[0] for part in stream.split(", ")] == ["C-STANCE", "FOMC", "ScienceQA", "NumGLUE-cm",
                                                                "NumGLUE-ds"]
    assert "C-STANCE 64/100 option_accuracy" in stream and "NumGLUE-cm 64/81 number_accuracy" in stream
    assert "NumGLUE-ds 64/100" in stream  # its 6 training copies of test instances removed before the sample
    assert "none, random, inscl, kpig, multitask, inscl-dynamic, inscl-insinfo, ewc, lwf, olora" in proc.stdout


@needs_trace
def test_trace_smoke_stores_runs_and_compares_against_random_once_random_is_stored(tmp_path):
    """The first stored run is `none`; once random is stored the paired differences are taken from random,
    not from the strategy that happened to be stored first."""
    args = [sys.executable, str(TRACE_SCRIPT), "--smoke", "--quiet", "--seeds", "1", "--out", str(tmp_path / "runs"),
            "--results", str(tmp_path / "results")]
    for strategy in ("none", "random"):
        proc = subprocess.run([*args, "--strategies", strategy], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
    stored = tmp_path / "results" / "short5-smoke"
    assert {p.name for p in stored.glob("*.run.json.gz")} == {"none-seed1.run.json.gz", "random-seed1.run.json.gz"}
    comparison = json.loads((stored / "comparison.json").read_text())
    assert comparison["baseline"] == "random"
    assert len(json.loads((stored / "benchmark.json").read_text())["invocations"]) == 2


@needs_trace
def test_a_stopped_benchmark_records_its_cpu_seconds_and_resumes(tmp_path):
    """SIGTERM in the middle of a run: exit 143, benchmark.json keeps the invocation's CPU seconds, and the
    same command again finishes the run from its stages on disk."""
    import signal
    import time

    args = [sys.executable, str(TRACE_SCRIPT), "--smoke", "--quiet", "--strategies", "none,random", "--seeds", "1,2",
            "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first_stage = tmp_path / "runs" / "short5-smoke" / "none-seed1" / "stages" / "01-C-STANCE" / "eval.json"
    deadline = time.monotonic() + 300
    while not first_stage.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=300)
    assert proc.returncode == 143
    stored = tmp_path / "results" / "short5-smoke"
    invocation, = json.loads((stored / "benchmark.json").read_text())["invocations"]
    assert invocation["cpu_seconds"] > 0
    again = subprocess.run([*args[:5], "none", "--seeds", "1", *args[8:]], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (stored / "none-seed1.run.json.gz").is_file()
