"""Messages of `citune plan` on bad or silently changed data: one line naming the file, the key and the cause."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from citune.config import load_config
from citune.data import build_stream
from citune.data.readers import load_file


def _write(path: Path, obj) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in obj), encoding="utf-8")
    else:
        path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def _config(tmp_path: Path, tasks: list[dict], **data) -> Path:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"name": "tiny"}, "data": {"kind": "tasks", "tasks": tasks, **data}}))
    return cfg


def _task(name: str, *files: str) -> dict:
    return {"name": name, "sources": [{"path": f} for f in files]}


def plan(tmp_path: Path, cfg: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CITUNE_QUIET": "1", "CI": "true"}  # as CI runs it: notes are said even when quiet
    before = set(tmp_path.rglob("*"))
    proc = subprocess.run([sys.executable, "-m", "citune", "plan", str(cfg)], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert set(tmp_path.rglob("*")) == before, "planning must write nothing"
    return proc


def fails(tmp_path: Path, cfg: Path, *needles: str) -> str:
    proc = plan(tmp_path, cfg)
    err = proc.stderr.strip()
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("error: "), err
    for needle in needles:
        assert needle in err, err
    return err


# ----------------------------------------------------------------------------- item 10: file and cause named
def test_superni_file_with_no_instances_names_the_file_and_the_cause(tmp_path):
    _write(tmp_path / "task1.json", {"Definition": ["Do it."], "Instances": []})
    cfg = _config(tmp_path, [_task("t", "task1.json")])
    fails(tmp_path, cfg, f"error: {tmp_path / 'task1.json'}: data.tasks[0]: task 't' has no instances",
          "the Instances list is empty")


def test_superni_file_whose_outputs_are_all_empty_names_the_file_and_the_cause(tmp_path):
    _write(tmp_path / "task1.json", {"Definition": ["Do it."],
                                     "Instances": [{"input": "a", "output": [""]}, {"input": "b", "output": [" "]}]})
    cfg = _config(tmp_path, [_task("t", "task1.json")])
    fails(tmp_path, cfg, f"error: {tmp_path / 'task1.json'}: data.tasks[0]: task 't' has no instances",
          "every instance's output is empty (2 read)")


def test_every_empty_source_of_a_task_is_named_with_its_cause(tmp_path):
    _write(tmp_path / "a.json", {"Definition": ["Do it."], "Instances": []})
    _write(tmp_path / "b.jsonl", [{"prompt": "p", "answer": ""}])
    cfg = _config(tmp_path, [_task("t", "a.json", "b.jsonl")])
    fails(tmp_path, cfg, f"{tmp_path / 'a.json'}, {tmp_path / 'b.jsonl'}: data.tasks[0]",
          "a.json: the Instances list is empty", "b.jsonl: every record's answer is empty (1 read)")


def test_empty_training_source_beside_a_test_source_is_named(tmp_path):
    _write(tmp_path / "train.jsonl", [{"instruction": "Copy.", "input": "x", "output": ""}])
    _write(tmp_path / "test.jsonl", [{"instruction": "Copy.", "input": "y", "output": "y"}])
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"name": "tiny"}, "data": {"kind": "tasks", "tasks": [
        {"name": "t", "sources": [{"path": "train.jsonl"}, {"path": "test.jsonl", "split": "test"}]}]}}))
    fails(tmp_path, cfg, f"error: {tmp_path / 'train.jsonl'}: data.tasks[0]: task 't' has no training data",
          "every record's output is empty (1 read)")


def test_one_record_task_names_its_file_and_why_it_cannot_be_split(tmp_path):
    _write(tmp_path / "one.jsonl", [{"instruction": "Copy.", "input": "x", "output": "x"}])
    cfg = _config(tmp_path, [_task("t", "one.jsonl")])
    fails(tmp_path, cfg, f"error: {tmp_path / 'one.jsonl'}: data.test_size: task 't' has only 1 instance; "
          "a train/test split needs at least 2")


def test_too_large_test_count_names_the_files(tmp_path):
    _write(tmp_path / "a.jsonl", [{"instruction": "Copy.", "input": str(i), "output": str(i)} for i in range(3)])
    cfg = _config(tmp_path, [_task("t", "a.jsonl")], test_size=5)
    fails(tmp_path, cfg, f"error: {tmp_path / 'a.jsonl'}: data.test_size: test_size 5 is larger than task 't'")


@pytest.mark.parametrize("tasks, data, needle", [
    ([_task("t", "a.jsonl"), _task("t", "a.jsonl")], {}, "data.tasks[1]: duplicate task name 't'"),
    ([_task("t", "a.jsonl")], {"test_size": 2.5}, "data.test_size: test_size 2.5 must be a fraction"),
    ([_task("a..b", "a.jsonl")], {}, "data.tasks[0].name: task name 'a..b'"),
    ([], {}, "data.tasks: data.kind is 'tasks' but data.tasks is empty"),
])
def test_config_errors_name_the_yaml_file(tmp_path, tasks, data, needle):
    _write(tmp_path / "a.jsonl", [{"instruction": "Copy.", "input": str(i), "output": str(i)} for i in range(4)])
    cfg = _config(tmp_path, tasks, **data)
    fails(tmp_path, cfg, f"error: {cfg}: {needle}")


# ----------------------------------------------------------------------------- item 11: duplicates are said and counted
def test_exact_duplicates_are_counted_and_announced(tmp_path):
    rows = [{"instruction": "Copy.", "input": str(i), "output": str(i)} for i in range(4)]
    _write(tmp_path / "a.jsonl", rows + rows[:2])
    cfg = _config(tmp_path, [_task("t", "a.jsonl")], test_size=1)
    assert load_file(tmp_path / "a.jsonl").duplicates == 2
    task = build_stream(load_config(cfg)).tasks[0]
    assert task.duplicates_dropped == 2 and len(task.train) + len(task.test) == 4
    assert build_stream(load_config(cfg)).dropped() == {"t": {"duplicates_dropped": 2, "overlap_dropped": 0}}
    proc = plan(tmp_path, cfg)
    assert proc.returncode == 0, proc.stderr
    notice = [line for line in proc.stderr.splitlines() if "duplicate" in line]
    assert notice == [f"note: task 't' (data.tasks[0]): 2 exact duplicate instances dropped, each kept once: "
                      f"{tmp_path / 'a.jsonl'} (2)"], proc.stderr


def test_no_notice_without_duplicates(tmp_path):
    _write(tmp_path / "a.jsonl", [{"instruction": "Copy.", "input": str(i), "output": str(i)} for i in range(4)])
    proc = plan(tmp_path, _config(tmp_path, [_task("t", "a.jsonl")], test_size=1))
    assert proc.returncode == 0 and "duplicate" not in proc.stderr, proc.stderr


# ----------------------------------------------------------------------------- item 12: the nearly matched format
@pytest.mark.parametrize("name, content, needle", [
    ("pa.jsonl", [{"prompt": "p"}], "line 1: looks like prompt-answer but has no 'answer' field"),
    ("pa.json", [{"prompt": "p"}, {"prompt": "q", "answer": "a"}],
     "record 0: looks like prompt-answer but has no 'answer' field"),
    ("al.jsonl", [{"instruction": "i", "input": "x"}], "line 1: looks like alpaca but has no 'output' field"),
    ("al.jsonl", [{"input": "x", "output": "y"}], "line 1: looks like alpaca but has no 'instruction' field"),
    ("sn.json", {"Definition": ["Do it."], "Positive Examples": []},
     "looks like superni but has no 'Instances' field"),
])
def test_detection_names_the_missing_field_of_the_nearest_format(tmp_path, name, content, needle):
    _write(tmp_path / name, content)
    fails(tmp_path, _config(tmp_path, [_task("t", name)]), f"error: {tmp_path / name}: {needle}")


def test_detection_without_any_known_field_lists_the_formats(tmp_path):
    _write(tmp_path / "q.jsonl", [{"question": "q", "response": "r"}])
    fails(tmp_path, _config(tmp_path, [_task("t", "q.jsonl")]), "line 1: cannot detect the format from the fields "
          "['question', 'response']", "'instruction'/'output' (alpaca)", "'prompt'/'answer' (prompt-answer)")
