"""The run directory is one module's knowledge (runs/rundir.py): paths, the stage record as one commit,
artifacts, checkpoints; runs/rundata.py reads back what it wrote."""
import json

from citune.config import load_config
from citune.runs.rundata import load_run
from citune.runs.rundir import RunDir, parse_run_dir_name, run_dir_for, run_dir_name


def test_a_recorded_stage_has_its_files_before_the_manifest_says_done(tmp_path):
    cfg = load_config(None, ["model.name=tiny"])
    run = RunDir(tmp_path / "r")
    manifest = run.init(cfg, ["a", "b"], resume=False)
    entry = manifest["stages"][1]
    seen = []
    real_save = run.save_manifest

    def save(m):  # at the commit, every file of the stage is already there
        seen.append([p.name for p in sorted(run.stage_dir(1, "a").iterdir())])
        real_save(m)

    run.save_manifest = save
    run.record_stage(manifest, entry, {"task": "a"}, replay=[{"uid": "x"}], train_log=[{"step": 1}])
    assert seen == [["eval.json", "replay.jsonl", "train_log.jsonl"]]
    assert run.manifest()["stages"][1]["status"] == "done"
    assert json.loads(run.eval_path(1, "a").read_text()) == {"task": "a"}
    assert run.stages_present() == {1: "a"}


def test_artifacts_and_checkpoints(tmp_path):
    run = RunDir(tmp_path)
    run.write_metrics({"ap": 1.0})
    run.write_artifact("inscl_distances", {"tasks": ["a"], "matrix": [[0.0]]})
    assert run.has_artifact("inscl_distances") and run.artifact_names() == ["inscl_distances"]
    assert load_run(tmp_path).inscl == {"tasks": ["a"], "matrix": [[0.0]]}
    for i in (1, 2, 3):
        run.checkpoint(i).parent.mkdir(exist_ok=True)
        run.checkpoint(i).write_bytes(b"x")
    run.drop_checkpoints(keep=2)
    assert sorted(p.name for p in run.checkpoint(1).parent.iterdir()) == ["stage-02.safetensors"]
    run.drop_checkpoints()
    assert not list(run.checkpoint(1).parent.iterdir())


def test_compare_run_names_round_trip(tmp_path):
    assert run_dir_name("inscl-dynamic", 3) == "inscl-dynamic-seed3"
    assert parse_run_dir_name("inscl-dynamic-seed3") == ("inscl-dynamic", 3)
    assert parse_run_dir_name("whatever") == (None, None)
    assert run_dir_for(tmp_path, "random", 1) == tmp_path / "random-seed1"
