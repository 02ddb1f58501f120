"""`citune compare` and `citune report` end to end on the tiny config (two strategies, one seed):
run directories, comparison table and report with paired-bootstrap intervals, skipping finished runs,
resuming a partial one, regenerating reports; TensorBoard logging through Accelerate's trackers on the same runs."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "examples" / "tiny.yaml"
RUNS = {"none-seed1": "none", "random-seed1": "random"}
COMPARISON_PLOTS = {"relative_gain.png", "ap_by_stage.png", "final_scores.png", "p_score.png"}
HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


def citune(*args, quiet=True, **kw):
    env = {k: v for k, v in os.environ.items() if k not in ("CITUNE_QUIET", "CI")} | ({"CITUNE_QUIET": "1"} if quiet else {})
    # Sleeping OpenMP workers: on cores shared with other jobs, spinning ones make the tiny runs ~10x slower.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return subprocess.run([sys.executable, "-m", "citune", *map(str, args)], capture_output=True, text=True,
                          env=env, **kw)


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    parent = tmp_path_factory.mktemp("compare") / "cmp"
    tracking = ["run.report_to=[tensorboard]"] if HAS_TENSORBOARD else []
    proc = citune("compare", TINY, *tracking, "--strategies", "none,random", "-o", parent, "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return parent, proc


def stage_files(run: Path) -> dict:
    """Every file a training stage writes, with its modification time."""
    files = [run / "manifest.json", run / "metrics.json", run / "config.yaml",
             *run.glob("stages/*/*"), *run.glob("checkpoints/*")]
    return {str(p.relative_to(run)): p.stat().st_mtime_ns for p in files}


def read_lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_compare_writes_runs_table_and_report(compared):
    parent, proc = compared
    for name, strategy in RUNS.items():
        run = parent / name
        manifest = json.loads((run / "manifest.json").read_text())
        assert manifest["strategy"] == strategy and manifest["seed"] == 1
        assert [s["status"] for s in manifest["stages"]] == ["done"] * 4 and manifest["finished"]
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["tasks"] == ["sentiment", "parity", "yes-no-membership"]
        assert (run / "report.html").is_file() and (run / "report.md").is_file()
        replayed = read_lines(run / "stages" / "03-yes-no-membership" / "replay.jsonl")
        assert len(replayed) == (0 if strategy == "none" else 2 * 4)
    # the same seed gives every strategy the same first stage (nothing to replay yet)
    none, rand = (parent / name for name in RUNS)
    losses = [[r["loss"] for r in read_lines(d / "stages" / "01-sentiment" / "train_log.jsonl")] for d in (none, rand)]
    assert losses[0] == losses[1]
    evals = [json.loads((d / "stages" / "01-sentiment" / "eval.json").read_text())["tasks"] for d in (none, rand)]
    assert evals[0] == evals[1]

    data = json.loads((parent / "comparison.json").read_text())
    assert [r["strategy"] for r in data["strategies"]] == ["none", "random"]
    assert [r["run"] for r in data["runs"]] == list(RUNS)
    assert all(r["complete"] and r["stages_done"] == 3 for r in data["runs"])
    for row, name in zip(data["runs"], RUNS):
        metrics = json.loads((parent / name / "metrics.json").read_text())
        assert row["ap"] == metrics["ap"] and row["bwt"] == metrics["bwt"]
    assert data["strategies"][1]["ap"]["n"] == 1 and data["strategies"][1]["ap"]["std"] is None
    md = (parent / "comparison.md").read_text()
    assert "| final AP" in md and "none" in md and "random" in md
    report = (parent / "report.md").read_text()
    assert "[none-seed1](none-seed1/report.md)" in report and "[random-seed1](random-seed1/report.md)" in report
    assert {p.name for p in (parent / "plots").glob("*.png")} == COMPARISON_PLOTS
    html = (parent / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(COMPARISON_PLOTS)
    assert 'href="random-seed1/report.html"' in html
    assert "final AP" in proc.stdout and "random" in proc.stdout  # the table is printed


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="tensorboard is not installed")
def test_tensorboard_events_are_written(compared):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    parent, _ = compared
    logs = parent / "none-seed1" / "logs"
    assert list(logs.rglob("events.out.tfevents.*")), f"no TensorBoard events under {logs}"
    acc = EventAccumulator(str(logs / "citune"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("stage/final_loss")] == [1, 2, 3]
    assert all(e.value > 0 for e in acc.Scalars("stage/final_loss"))


def test_second_compare_skips_finished_runs(compared):
    parent, _ = compared
    before = {name: stage_files(parent / name) for name in RUNS}
    manifests = {name: (parent / name / "manifest.json").read_text() for name in RUNS}
    comparison = (parent / "comparison.json").stat().st_mtime_ns
    # without --quiet this time: a presentation setting does not make a finished run look different
    proc = citune("compare", TINY, "--strategies", "none,random", "-o", parent,
                  *(["run.report_to=[tensorboard]"] if HAS_TENSORBOARD else []), quiet=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in RUNS:
        assert (parent / name / "manifest.json").read_text() == manifests[name], "a finished run was retrained"
        assert stage_files(parent / name) == before[name]
    assert "done already, skipped" in proc.stdout + proc.stderr
    assert (parent / "comparison.json").stat().st_mtime_ns > comparison  # the table is rebuilt


def test_compare_refuses_a_run_made_with_another_config(compared):
    parent, _ = compared
    before = stage_files(parent / "none-seed1")
    proc = citune("compare", TINY, "--strategies", "none", "-o", parent, "train.lr=0.001")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "train.lr" in proc.stderr and "none-seed1" in proc.stderr and "Traceback" not in proc.stderr
    assert stage_files(parent / "none-seed1") == before


def test_compare_resumes_a_partial_run(compared, tmp_path):
    """A run killed after its base evaluation is resumed by the same command, to the same results."""
    parent, _ = compared
    work = tmp_path / "cmp"
    shutil.copytree(parent, work)
    run = work / "none-seed1"
    reference = json.loads((run / "metrics.json").read_text())
    manifest = json.loads((run / "manifest.json").read_text())
    for stage in manifest["stages"][1:]:
        for key in list(stage):
            if key not in ("index", "task"):
                del stage[key]
        stage["status"] = "pending"
        shutil.rmtree(run / "stages" / f"{stage['index']:02d}-{stage['task']}")
    manifest["finished"] = None
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "metrics.json").unlink()
    shutil.rmtree(run / "checkpoints")
    base_eval = (run / "stages" / "00-base" / "eval.json").stat().st_mtime_ns
    random_before = stage_files(work / "random-seed1")
    # without --quiet and the tracker: presentation settings, the run continues with its own
    proc = citune("compare", TINY, "--strategies", "none,random", "-o", work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = json.loads((run / "metrics.json").read_text())
    assert resumed["matrix"] == reference["matrix"] and resumed["ap"] == reference["ap"]
    assert (run / "stages" / "00-base" / "eval.json").stat().st_mtime_ns == base_eval  # not redone
    assert stage_files(work / "random-seed1") == random_before
    assert json.loads((work / "comparison.json").read_text())["runs"][0]["complete"]


def test_run_identity_ignores_presentation_and_schema_additions():
    from citune.config import first_difference, run_identity
    from citune.config import load_config

    stored = load_config(str(TINY), ["run.quiet=true", "run.report_to=[tensorboard]"]).to_dict()
    del stored["replay"]["kpig"]["probe"]  # a key added to the schema after the run was made
    now = load_config(str(TINY)).to_dict()
    assert run_identity(stored) == run_identity(now)
    changed = load_config(str(TINY), ["replay.per_task=5"]).to_dict()
    assert first_difference(run_identity(stored), run_identity(changed)) == "replay.per_task"
    stored["replay"]["retired_key"] = 1  # a key this version no longer knows
    assert first_difference(run_identity(stored), run_identity(now)) == "replay.retired_key"


def test_run_identity_ignores_data_keys_the_kind_does_not_read():
    """A stored config holds every default of its day: a SuperNI run stays the same run when the
    synthetic stream's default changes (2026-12-03: arithmetic became list-ops)."""
    from citune.config import config_difference, load_config

    now = load_config(None, ["data.kind=superni"]).to_dict()
    stored = json.loads(json.dumps(now))
    stored["data"]["synthetic"]["families"] = ["sentiment", "entity-extraction", "arithmetic", "date-format"]
    assert config_difference(stored, now) is None
    stored["data"]["superni"]["per_source_cap"] = 7
    assert config_difference(stored, now) == "data.superni.per_source_cap: 7 there, 40 now"


def test_report_regenerates_a_run_and_a_comparison(compared, tmp_path):
    parent, _ = compared
    work = tmp_path / "cmp"
    shutil.copytree(parent, work)
    run = work / "random-seed1"
    for d in (run, work):
        (d / "report.md").unlink()
        (d / "report.html").unlink()
        shutil.rmtree(d / "plots")
    (work / "comparison.json").write_text("{}")  # `citune report PARENT` recognises a comparison by this file
    (work / "comparison.md").unlink()
    proc = citune("report", run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (run / "report.md").read_text()
    assert "Complete run: 3 of 3 stages done." in md and "Replay composition" in md
    assert (run / "report.html").is_file() and (run / "plots" / "score_matrix.png").is_file()
    proc = citune("report", work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((work / "comparison.json").read_text())
    assert [r["run"] for r in data["runs"]] == list(RUNS)
    assert {p.name for p in (work / "plots").glob("*.png")} == COMPARISON_PLOTS
    assert (work / "report.html").is_file() and (work / "comparison.md").is_file()


def test_compare_reports_paired_intervals(compared, tmp_path):
    """comparison.json, comparison.md and the printed table carry the paired-bootstrap intervals;
    the per-instance rows they resample reproduce every stored summary and metric."""
    import numpy as np

    from citune.evaluation.metrics import primary_score
    from citune.evaluation.uncertainty import resampled_metrics
    from citune.report import build_comparison_report
    from citune.runs.rundata import instance_scores, load_run

    parent, proc = compared
    keys = ["ap", "bwt", "fwt", "forgetting", "relative_gain", "rg_mean", "p_score", "p_score_change", "v_score"]
    for name in RUNS:
        run = load_run(parent / name)
        scores = instance_scores(run)
        for i, ev in run.evals.items():
            for group in ("tasks", "heldout"):
                for task, summary in ev[group].items():
                    assert scores.scores[task][i].mean() == pytest.approx(primary_score(summary), abs=1e-9)
        draws = {t: np.arange(len(u))[None] for t, u in scores.uids.items()}
        again = resampled_metrics(scores, draws, keys)
        for key in keys:
            stored = run.metrics[key]
            assert again[key][0] == pytest.approx(np.nan if stored is None else stored, nan_ok=True), (name, key)

    data = json.loads((parent / "comparison.json").read_text())
    assert data["baseline"] == "random"
    assert data["interval"]["method"] == "paired bootstrap over test instances within each task and over seeds"
    assert data["interval"]["resamples"] == 1000 and data["interval"]["seed"] == 0 and data["interval"]["seeds"] == [1]
    none, rand = data["strategies"]
    assert rand["vs_baseline"] is None
    lo, hi = none["ap"]["ci"]
    assert lo <= none["ap"]["mean"] <= hi and lo < hi
    for key in ("ap", "bwt", "forgetting", "p_score", "v_score"):
        assert len(rand[key]["ci"]) == 2 and rand[key]["ci"][0] <= rand[key]["ci"][1]
        diff = none["vs_baseline"][key]
        assert diff["diff"] == pytest.approx(none[key]["mean"] - rand[key]["mean"])
        assert isinstance(diff["excludes_zero"], bool)
        assert diff["excludes_zero"] == (diff["ci"][0] > 0 or diff["ci"][1] < 0)
    # the tiny random model answers alike with and without replay: a paired difference of exactly 0
    # (resampling the two runs independently would give a wide interval)
    a, b = (instance_scores(load_run(parent / name)) for name in RUNS)
    same = all(np.array_equal(a.scores[t], b.scores[t], equal_nan=True) for t in a.names)
    assert (none["vs_baseline"]["ap"]["ci"] == [0.0, 0.0]) == same
    for text in (proc.stdout, (parent / "comparison.md").read_text(), (parent / "report.md").read_text()):
        assert "Δ vs random" in text and "1,000 resamples" in text and "test-instance noise only" in text
    assert f"{none['ap']['mean']:.2f} [{lo:.1f}, {hi:.1f}]" in proc.stdout

    # `citune report` keeps a recorded baseline; a run without per-instance rows gets no intervals
    work = tmp_path / "cmp"
    shutil.copytree(parent, work, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    build_comparison_report(work, [work / name for name in RUNS], baseline="none")
    stage = work / "random-seed1" / "stages" / "02-parity" / "eval.json"
    ev = json.loads(stage.read_text())
    del ev["predictions"]
    stage.write_text(json.dumps(ev))
    out = citune("report", work)
    assert out.returncode == 0, out.stderr[-3000:]
    data = json.loads((work / "comparison.json").read_text())
    assert data["baseline"] == "none" and [r["strategy"] for r in data["strategies"]] == ["none", "random"]
    none, rand = data["strategies"]
    assert none["vs_baseline"] is None and none["ap"]["ci"] is not None
    assert rand["ap"]["ci"] is None and rand["vs_baseline"]["ap"] == {
        "diff": pytest.approx(rand["ap"]["mean"] - none["ap"]["mean"]), "ci": None, "excludes_zero": None}
    assert "Δ vs none" in (work / "comparison.md").read_text() and "[n/a]" in (work / "report.md").read_text()


def test_bad_compare_arguments(tmp_path):
    proc = citune("compare", TINY, "--strategies", "none,no-such-strategy", "-o", tmp_path / "x")
    assert proc.returncode == 2 and "no-such-strategy" in proc.stderr and "Traceback" not in proc.stderr
    proc = citune("compare", TINY, "--strategies", "none", "--seeds", "1,two", "-o", tmp_path / "x")
    assert proc.returncode == 2 and "--seeds" in proc.stderr
    proc = citune("compare", TINY, "--strategies", "none,random", "--baseline", "kpig", "-o", tmp_path / "x")
    assert proc.returncode == 2 and "--baseline 'kpig'" in proc.stderr and "Traceback" not in proc.stderr
    proc = citune("report", tmp_path)
    assert proc.returncode == 2 and "not a run directory" in proc.stderr
    assert not (tmp_path / "x").exists()
