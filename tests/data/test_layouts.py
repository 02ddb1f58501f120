"""Benchmark layouts as shipped (SAPT, TRACE), split roles, train/test overlap, stratified test splits."""
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from citune.config import load_config
from citune.data import build_stream
from citune.errors import InputError

TRACE500 = Path(__file__).resolve().parents[3] / "shared" / "data" / "trace500"


def _json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")


def _superni_file(definition: str, pairs: list[tuple[str, str]]) -> dict:
    return {"Definition": [definition], "Instances": [{"input": i, "output": [o]} for i, o in pairs]}


def sapt_folder(root: Path, name: str, n_train: int = 12, n_test: int = 4) -> Path:
    """A SAPT-layout task folder (SuperNI-format train/dev/test; dev is a copy of test, as SAPT ships it)."""
    train = [(f"{name} train {i}", f"out {i}") for i in range(n_train)]
    test = [(f"{name} test {i}", f"gold {i}") for i in range(n_test)]
    _json(root / name / "train.json", _superni_file(f"Solve {name}.", train))
    _json(root / name / "test.json", _superni_file(f"Solve {name}.", test))
    _json(root / name / "dev.json", _superni_file(f"Solve {name}.", test))
    return root / name


def trace_folder(root: Path, name: str, n_train: int = 10, n_eval: int = 3, n_test: int = 5,
                 train: bool = True) -> Path:
    """A TRACE-layout task folder (prompt/answer train/eval/test)."""
    rows = lambda split, n: [{"prompt": f"{name} {split} {i}\nAnswer:", "answer": f"{split}-{i}"}  # noqa: E731
                             for i in range(n)]
    if train:
        _json(root / name / "train.json", rows("train", n_train))
    _json(root / name / "eval.json", rows("eval", n_eval))
    _json(root / name / "test.json", rows("test", n_test))
    return root / name


def config(tmp_path: Path, data: dict, **top):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"model": {"name": "tiny"}, "data": data, **top}), encoding="utf-8")
    return load_config(path)


def keys(xs) -> set:
    return {(x.instruction, x.input, x.output) for x in xs}


def test_sapt_folder_uses_each_file_for_its_role(tmp_path):
    sapt_folder(tmp_path / "sapt", "task1")
    cfg = config(tmp_path, {"kind": "tasks", "tasks": [{"name": "t1", "sources": [{"path": "sapt/task1"}]}]})
    t = build_stream(cfg).tasks[0]
    assert len(t.train) == 12 and len(t.test) == 4 and len(t.validation) == 4
    assert all("test" in x.input for x in t.test) and all("train" in x.input for x in t.train)
    assert not keys(t.train) & keys(t.validation)  # the dev copy of test is never trained on
    # provenance names the task folder and the file, not the file stem
    assert {x.source for x in t.train} == {"sapt/task1/train.json"}
    assert {x.source for x in t.test} == {"sapt/task1/test.json"}


def test_test_size_does_not_apply_to_a_task_with_a_test_file(tmp_path):
    trace_folder(tmp_path / "trace", "A")
    cfg = config(tmp_path, {"kind": "tasks", "test_size": 3,
                            "tasks": [{"name": "A", "sources": [{"path": "trace/A"}]}]})
    t = build_stream(cfg).tasks[0]
    assert (len(t.train), len(t.test), len(t.validation)) == (10, 5, 3)


def test_explicit_split_roles_of_plain_files(tmp_path):
    _json(tmp_path / "pool.json", [{"instruction": "Do.", "input": f"x{i}", "output": f"y{i}"} for i in range(6)])
    _json(tmp_path / "held.json", [{"instruction": "Do.", "input": f"h{i}", "output": f"z{i}"} for i in range(2)])
    _json(tmp_path / "val.json", [{"instruction": "Do.", "input": f"v{i}", "output": f"w{i}"} for i in range(3)])
    cfg = config(tmp_path, {"kind": "tasks", "tasks": [{"name": "t", "sources": [
        {"path": "pool.json"}, {"path": "held.json", "split": "test"}, {"path": "val.json", "split": "validation"}]}]})
    t = build_stream(cfg).tasks[0]
    assert (len(t.train), len(t.test), len(t.validation)) == (6, 2, 3)
    assert {x.source for x in t.test} == {"held.json"}


def test_a_split_picks_files_of_a_task_folder_and_an_explicit_split_wins(tmp_path):
    trace_folder(tmp_path / "trace", "A")
    cfg = config(tmp_path, {"kind": "tasks", "tasks": [
        {"name": "A", "sources": [{"path": "trace/A", "split": "train"}, {"path": "trace/A/test.json"}]}],
        "heldout": [{"name": "H", "sources": [{"path": "trace/A/eval.json", "split": "test"}]}]})
    s = build_stream(cfg)
    assert (len(s.tasks[0].train), len(s.tasks[0].test), len(s.tasks[0].validation)) == (10, 5, 0)
    assert {x.source for x in s.tasks[0].test} == {"trace/A/test.json"}  # its name in the layout says test
    held = s.heldout[0]
    assert len(held.test) == 3 and {x.source for x in held.test} == {"trace/A/eval.json"}


def test_benchmark_folder_stream(tmp_path):
    root = tmp_path / "bench"
    for name in ("A", "B"):
        trace_folder(root, name)
    trace_folder(root, "M", train=False)  # evaluate-only (like TRACE-500's MeetingBank)
    (root / "order.txt").write_text("B\nA\n", encoding="utf-8")
    cfg = config(tmp_path, {"kind": "benchmark", "benchmark": {
        "root": "bench", "order": "order.txt", "heldout": ["M"], "scorers": {"A": "exact_match"}}})
    s = build_stream(cfg)
    assert s.names == ["B", "A"] and [t.name for t in s.heldout] == ["M"]
    assert [t.scorer for t in s.tasks] == ["rougeL", "exact_match"]
    assert [len(t.test) for t in s.tasks + s.heldout] == [5, 5, 5]
    assert {x.source for x in s.heldout[0].test} == {"M/test.json"}


def test_a_task_folder_without_training_data_is_an_error(tmp_path):
    trace_folder(tmp_path / "bench", "M", train=False)
    cfg = config(tmp_path, {"kind": "benchmark", "benchmark": {"root": "bench", "order": ["M"]}})
    with pytest.raises(InputError, match="task 'M' has no training data"):
        build_stream(cfg)


@pytest.mark.parametrize("bad, message", [
    ({"order": ["X"]}, "no task folder 'X'"),
    ({"order": ["A"], "scorers": {"B": "rougeL"}}, "not a task of the stream"),
    ({"order": ["A"], "scorers": {"A": "bleu"}}, "scorers.A"),
])
def test_benchmark_config_mistakes(tmp_path, bad, message):
    trace_folder(tmp_path / "bench", "A")
    with pytest.raises(InputError, match=message):
        build_stream(config(tmp_path, {"kind": "benchmark", "benchmark": {"root": "bench", **bad}}))


def _planted_duplicate(tmp_path) -> Path:
    folder = trace_folder(tmp_path / "bench", "A")
    rows = json.loads((folder / "train.json").read_text())
    rows.append(json.loads((folder / "test.json").read_text())[2])  # a test item also in train.json
    _json(folder / "train.json", rows)
    return folder


def test_a_test_instance_in_the_training_data_is_reported(tmp_path):
    _planted_duplicate(tmp_path)
    cfg = config(tmp_path, {"kind": "benchmark", "benchmark": {"root": "bench", "order": ["A"]}})
    with pytest.raises(InputError) as e:
        build_stream(cfg)
    line = e.value.line()
    assert line.startswith("A/test.json: uid ") and "A/train.json" in line and "test_overlap" in line


def test_test_overlap_drop_removes_the_training_copy(tmp_path):
    _planted_duplicate(tmp_path)
    cfg = config(tmp_path, {"kind": "benchmark", "test_overlap": "drop",
                            "benchmark": {"root": "bench", "order": ["A"]}})
    t = build_stream(cfg).tasks[0]
    assert t.overlap_dropped == 1 and len(t.train) == 10 and not keys(t.train) & keys(t.test)


def test_planted_duplicate_exits_2_from_the_cli(tmp_path):
    _planted_duplicate(tmp_path)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"name": "tiny"}, "data": {
        "kind": "benchmark", "benchmark": {"root": "bench", "order": ["A"]}}}), encoding="utf-8")
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "citune", "run", str(cfg), "-o", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "A/test.json" in proc.stderr and "A/train.json" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def test_merged_task_test_split_draws_from_every_source_and_follows_the_seed(tmp_path):
    sources = []
    for k in range(8):  # 8 equal sources, 3 test instances: which sources give one depends on the seed
        _json(tmp_path / f"s{k}.json", [{"instruction": f"Do {k}.", "input": f"{k}-{i}", "output": "o"}
                                       for i in range(6)])
        sources.append({"path": f"s{k}.json"})
    drawn = set()
    for seed in range(6):
        cfg = config(tmp_path, {"kind": "tasks", "test_size": 3, "split_seed": seed,
                                "tasks": [{"name": "t", "sources": sources}]})
        drawn.add(frozenset(x.source for x in build_stream(cfg).tasks[0].test))
    assert len(drawn) > 1 and all(len(d) == 3 for d in drawn)
    cfg = config(tmp_path, {"kind": "tasks", "test_size": 8, "tasks": [{"name": "t", "sources": sources}]})
    assert Counter(x.source for x in build_stream(cfg).tasks[0].test) == {f"s{k}.json": 1 for k in range(8)}


def test_split_by_run_seed(tmp_path):
    _json(tmp_path / "a.json", [{"instruction": "Do.", "input": f"x{i}", "output": "o"} for i in range(30)])
    data = {"kind": "tasks", "test_size": 5, "split_by_run_seed": True, "tasks": [{"name": "t", "sources": [
        {"path": "a.json"}]}]}
    tests = [{x.uid for x in build_stream(config(tmp_path, data, seed=s)).tasks[0].test} for s in (1, 2, 1)]
    assert tests[0] != tests[1] and tests[0] == tests[2]
    fixed = {**data, "split_by_run_seed": False}
    assert len({frozenset(x.uid for x in build_stream(config(tmp_path, fixed, seed=s)).tasks[0].test)
                for s in (1, 2)}) == 1


@pytest.mark.skipif(not TRACE500.is_dir(), reason="../shared/data/trace500 not present")
def test_trace_preset_builds_from_the_shipped_folder():
    cfg = load_config(Path(__file__).resolve().parents[2] / "examples" / "trace.yaml")
    s = build_stream(cfg)
    assert s.names == ["C-STANCE", "FOMC", "Py150", "ScienceQA", "NumGLUE-cm", "NumGLUE-ds", "20Minuten"]
    assert {t.name: t.scorer for t in s.tasks}["NumGLUE-ds"] == "number_accuracy"
    for t in s.tasks:
        assert {x.source for x in t.test} == {f"{t.name}/test.json"}
        assert {x.source for x in t.train} == {f"{t.name}/train.json"}
        assert not keys(t.train) & keys(t.test)


def test_test_overlap_drop_then_caps_the_training_set_at_max_train(tmp_path):
    """The training copies of test instances are removed before `max_train_per_task` samples: a task whose
    release holds more trainable instances than the cap trains on exactly the cap (it kept fewer when the
    copies were drawn into the sample first and removed after)."""
    folder = trace_folder(tmp_path / "bench", "A", n_train=10, n_test=10)
    rows = json.loads((folder / "train.json").read_text())
    _json(folder / "train.json", rows + json.loads((folder / "test.json").read_text()))  # 10 of 20 are test copies
    cfg = config(tmp_path, {"kind": "benchmark", "test_overlap": "drop", "max_train_per_task": 10,
                            "benchmark": {"root": "bench", "order": ["A"]}})
    t = build_stream(cfg).tasks[0]
    assert len(t.train) == 10 and not keys(t.train) & keys(t.test)
    assert t.overlap_dropped == 10  # every training copy in the release, counted once


def test_the_duplicates_note_is_said_once_when_the_stream_is_built_twice(tmp_path, capsys):
    """test_overlap: drop with a training cap builds the stream twice; the note about dropped duplicates
    comes from the second build only."""
    folder = trace_folder(tmp_path / "bench", "A")
    rows = json.loads((folder / "train.json").read_text())
    _json(folder / "train.json", rows + rows[:2])  # two exact duplicates inside train.json
    cfg = config(tmp_path, {"kind": "benchmark", "test_overlap": "drop", "max_train_per_task": 5,
                            "benchmark": {"root": "bench", "order": ["A"]}})
    build_stream(cfg)
    assert capsys.readouterr().err.count("2 exact duplicate instances dropped") == 1
