"""The data layer: readers, format detection, input errors, splits, caps, SuperNI and synthetic streams."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from citune.config import load_config
from citune.data import Instance, build_stream, safe_task_name
from citune.data.readers import (detect_format, load_source, read_alpaca, read_chat, read_prompt_answer,
                                 read_source, read_superni)
from citune.data.stream import allocate
from citune.data.synthetic import FAMILIES, generate, synthetic_task
from citune.types import instance_uid
from citune.errors import InputError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DATA = EXAMPLES / "data"


def write(path: Path, obj) -> Path:
    """A JSON file, a JSONL file (list of rows, for *.jsonl), or raw text/bytes."""
    if isinstance(obj, bytes):
        path.write_bytes(obj)
    elif isinstance(obj, str):
        path.write_text(obj, encoding="utf-8")
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in obj), encoding="utf-8")
    else:
        path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def alpaca_rows(n: int, tag: str = "a") -> list[dict]:
    return [{"instruction": f"Do {tag}.", "input": f"{tag} {i}", "output": f"out {i}"} for i in range(n)]


def cfg_for(tmp_path: Path, data: dict, name: str = "cfg.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump({"model": {"name": "tiny"}, "data": data}), encoding="utf-8")
    return load_config(p)


def records(stream) -> str:
    return json.dumps([[t.name, [x.to_record() for x in t.train], [x.to_record() for x in t.test]]
                       for t in stream.tasks + stream.heldout])


# ----------------------------------------------------------------------------- readers
def test_alpaca_json_and_jsonl(tmp_path):
    rows = [{"instruction": "Add.", "input": "1, 2", "output": "3"},
            {"instruction": "Greet.", "output": ["hi", "hello"]},  # no input, several references
            {"instruction": "Greet.", "input": None, "output": ["hi", "hello"]},  # duplicate: kept once
            {"instruction": "Skip.", "input": "x", "output": ["  "]}]  # no non-empty reference: skipped
    for name in ("a.json", "a.jsonl"):
        xs = read_alpaca(write(tmp_path / name, rows), task="t", label="data/" + name)
        assert [(x.instruction, x.input, x.outputs) for x in xs] == [
            ("Add.", "1, 2", ("3",)), ("Greet.", "", ("hi", "hello"))]
        assert all(x.task == "t" and x.source == "data/" + name for x in xs)
        assert xs[1].output == "hi"
        assert xs[0].uid == instance_uid("Add.", "1, 2", ("3",), "data/" + name)


def test_prompt_answer_and_chat(tmp_path):
    pa = read_prompt_answer(write(tmp_path / "p.json", [{"prompt": "Q?\n\nctx", "answer": "A"}]), task="t")
    assert (pa[0].instruction, pa[0].input, pa[0].outputs) == ("Q?\n\nctx", "", ("A",))
    assert pa[0].source == (tmp_path / "p.json").as_posix()
    chats = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                           {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Capital of France?"},
                           {"role": "assistant", "content": "Paris"}, {"role": "user", "content": "ignored"}]},
             {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}]
    xs = read_chat(write(tmp_path / "c.jsonl", chats))
    assert (xs[0].instruction, xs[0].input, xs[0].output) == ("Be brief.\n\nHi\n\nCapital of France?", "", "Paris")
    assert (xs[1].instruction, xs[1].output) == ("2+2?", "4")


def test_superni_file_and_directory():
    f = DATA / "superni" / "demo-unit-conversion.json"
    raw = json.loads(f.read_text())
    xs = read_superni(f, task="units")
    assert len(xs) == len(raw["Instances"])
    assert {x.instruction for x in xs} == {raw["Definition"][0]}
    assert xs[0].input == raw["Instances"][0]["input"] and xs[0].outputs == tuple(raw["Instances"][0]["output"])
    assert {x.source for x in xs} == {"demo-unit-conversion"}
    both = read_source(DATA / "superni", task="u")  # a directory: every file, auto-detected
    assert Counter(x.source for x in both) == {"demo-unit-conversion": 29, "demo-sorting": 29}


def test_format_detection(tmp_path):
    expected = {"alpaca.json": "alpaca", "alpaca.jsonl": "alpaca", "trace.json": "prompt-answer",
                "trace-parity.jsonl": "prompt-answer", "chat.jsonl": "chat", "chat-entities.jsonl": "chat",
                "superni/demo-sorting.json": "superni"}
    for name, fmt in expected.items():
        assert detect_format(DATA / name) == fmt, name
    # JSON lines in a file named *.json, with a byte-order mark
    p = write(tmp_path / "lines.json", "\ufeff" + "".join(json.dumps(r) + "\n" for r in alpaca_rows(3)))
    assert detect_format(p) == "alpaca" and len(read_source(p)) == 3
    # a directory mixing formats: each file detected on its own, sources named <dir label>/<file>
    d = tmp_path / "mixed"
    d.mkdir()
    write(d / "a.jsonl", alpaca_rows(2))
    write(d / "b.json", [{"prompt": "P", "answer": "A"}])
    write(d / ".hidden.json", "not json")
    (d / "notes.txt").write_text("ignored")
    sds = load_source(d, label="mixed")
    assert [(s.source, s.format, len(s.items)) for s in sds] == [("mixed/a.jsonl", "alpaca", 2),
                                                                 ("mixed/b.json", "prompt-answer", 1)]


BAD_FILES = [
    # (name, content, format, expected pieces of the message)
    ("bad.json", '[{"instruction": "a",\n "output": "b"},\n {"instruction": }]', "auto", ["invalid JSON", "line 3 column"]),
    ("bad.jsonl", '{"instruction": "a", "output": "b"}\n{"instruction": "a", "output": \n', "auto", ["line 2", "invalid JSON"]),
    ("miss.json", [{"instruction": "a", "output": "b"}, {"instruction": "a"}], "auto", ["record 1", "missing field 'output'"]),
    ("int.jsonl", [{"instruction": "a", "output": "b"}, {"instruction": "a", "output": 3}], "auto",
     ["line 2", "'output' must be a string or a list of strings (got int)"]),
    ("list.json", [{"instruction": "a", "output": ["b", None]}], "auto", ["record 0", "list containing null"]),
    ("ins.json", [{"instruction": "a", "output": "b"}, {"instruction": 5, "output": "b"}], "auto",
     ["record 1", "'instruction' must be a string"]),
    ("inp.json", [{"instruction": "a", "input": ["x"], "output": "b"}], "alpaca", ["record 0", "'input' must be a string"]),
    ("row.jsonl", [{"instruction": "a", "output": "b"}, ["not", "an", "object"]], "auto", ["line 2", "expected a JSON object"]),
    ("pa.json", [{"prompt": "p", "answer": "a"}, {"prompt": "p"}], "auto", ["record 1", "missing field 'answer'"]),
    ("chat1.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}], "auto", ["line 1", "no assistant message"]),
    ("chat2.jsonl", [{"messages": [{"role": "robot", "content": "hi"}]}], "auto", ["line 1", "role 'robot'"]),
    ("chat3.jsonl", [{"messages": [{"role": "user", "content": 1}, {"role": "assistant", "content": "x"}]}], "chat",
     ["line 1", "messages[0]: 'content' must be a string"]),
    ("chat4.jsonl", [{"messages": "hi"}], "chat", ["line 1", "'messages' must be a non-empty list"]),
    ("sni.json", {"Definition": ["d"], "Instances": [{"input": "x", "output": ["y"]}, {"input": "x", "output": 7}]},
     "auto", ["Instances[1]", "'output' must be a string or a list of strings"]),
    ("sni2.json", {"Definition": [], "Instances": []}, "auto", ["'Definition' must be a non-empty list"]),
    ("sni3.jsonl", [{"instruction": "a", "output": "b"}], "superni", ["must be one JSON object"]),
    ("obj.json", {"data": []}, "auto", ["cannot detect the format"]),
    ("keys.json", [{"question": "q", "response": "r"}], "auto", ["record 0", "cannot detect the format", "question"]),
    ("empty.json", "  \n", "auto", ["the file is empty"]),
    ("none.json", [], "auto", ["no records"]),
    ("utf.jsonl", b'{"instruction": "a", "output": "b"}\n{"instruction": "\xff\xfe", "output": "b"}\n', "auto",
     ["not UTF-8", "byte 53", "line 2"]),
    ("fmt.json", [{"instruction": "a", "output": "b"}], "xml", ["unknown format 'xml'"]),
    ("alpaca-obj.json", {"Definition": ["d"], "Instances": []}, "alpaca", ["needs a JSON array"]),
]


@pytest.mark.parametrize("name,content,fmt,pieces", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_files(tmp_path, name, content, fmt, pieces):
    p = write(tmp_path / name, content)
    with pytest.raises(InputError) as e:
        read_source(p, fmt)
    msg = str(e.value)
    assert msg.startswith(str(p) + ": ") and "\n" not in msg
    for piece in pieces:
        assert piece in msg, msg


def test_missing_file_and_empty_directory(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_source(tmp_path / "nope.json")
    (tmp_path / "d").mkdir()
    with pytest.raises(InputError, match="no .json/.jsonl/.ndjson files"):
        read_source(tmp_path / "d")


# ----------------------------------------------------------------------------- task names
@pytest.mark.parametrize("name", ["arithmetic", "Closed_QA", "Answerability Classification", "task-1.v2",
                                  "Wort (de)", "données"])
def test_safe_task_names(name):
    assert safe_task_name(name) == name


@pytest.mark.parametrize("name", ["", "a/b", "a\\b", "..", "a..b", ".hidden", "-x", " x", "x ", "x.", "a\x00b",
                                  "a:b", "tab\tname", "x" * 101])
def test_unsafe_task_names(name):
    with pytest.raises(InputError, match="task name"):
        safe_task_name(name, "config", "data.tasks[0].name")


def test_unsafe_name_in_config(tmp_path):
    write(tmp_path / "a.json", alpaca_rows(10))
    cfg = cfg_for(tmp_path, {"kind": "tasks", "tasks": [{"name": "../escape", "sources": [{"path": "a.json"}]}]})
    with pytest.raises(InputError, match=r"\.yaml: data.tasks\[0\].name: task name '../escape'"):
        build_stream(cfg)


# ----------------------------------------------------------------------------- stream errors
def test_stream_errors(tmp_path):
    write(tmp_path / "a.json", alpaca_rows(10))
    write(tmp_path / "empty.json", [{"instruction": "a", "output": ""}])  # every instance skipped
    src = [{"path": "a.json"}]

    def fails(data, *pieces):
        with pytest.raises(InputError) as e:
            build_stream(cfg_for(tmp_path, data))
        for piece in pieces:
            assert piece in str(e.value), str(e.value)

    fails({"kind": "tasks", "tasks": [{"name": "x", "sources": src}, {"name": "x", "sources": src}]},
          "data.tasks[1]", "duplicate task name 'x'")
    fails({"kind": "tasks", "tasks": [{"name": "x", "sources": src}], "heldout": [{"name": "x", "sources": src}]},
          "data.heldout[0]", "duplicate task name")
    fails({"kind": "tasks", "tasks": [{"name": "e", "sources": [{"path": "empty.json"}]}]},
          "data.tasks[0]", "task 'e' has no instances")
    fails({"kind": "tasks", "test_size": 11, "tasks": [{"name": "x", "sources": src}]},
          "data.test_size", "test_size 11 is larger than task 'x' (10 instances)")
    fails({"kind": "tasks", "test_size": 10, "tasks": [{"name": "x", "sources": src}]}, "leaves no training data")
    fails({"kind": "tasks", "test_size": 2.5, "tasks": [{"name": "x", "sources": src}]}, "whole count")
    fails({"kind": "tasks", "tasks": [{"name": "x", "sources": [{"path": "missing.json"}]}]},
          "missing.json", "file not found (data.tasks[0].sources[0])")
    fails({"kind": "tasks", "tasks": [{"name": "x", "sources": src + src}]}, "source 'a.json' is read twice")
    fails({"kind": "tasks", "tasks": []}, "data.tasks is empty")
    fails({"kind": "tasks", "tasks": [{"name": "x", "sources": [{"superni": "../../etc"}]}]}, "sources[0].superni")
    fails({"kind": "synthetic", "synthetic": {"families": ["arithmetic", "poetry"]}},
          "data.synthetic.families[1]", "unknown synthetic family 'poetry'", "parity")
    fails({"kind": "synthetic", "synthetic": {"families": ["parity"], "heldout_families": ["parity"]}},
          "duplicate task name 'parity'")
    for bad in ({"kind": "tasks", "tasks": [{"name": "x", "cap": 0, "sources": src}]},
                {"kind": "tasks", "tasks": [{"name": "x", "sources": [{"path": "a.json", "cap": -1}]}]},
                {"kind": "tasks", "max_train_per_task": 0}, {"test_size": 0}):
        with pytest.raises(InputError, match="greater than 0|must be positive"):
            cfg_for(tmp_path, bad)


# ----------------------------------------------------------------------------- splits and caps
def test_allocate():
    assert allocate([10, 10], 4) == [2, 2]
    assert allocate([90, 9, 1], 10) == [8, 1, 1]  # every part represented
    assert allocate([5, 5, 5], 2) == [1, 1, 0]  # too few for everyone: ties to the first parts
    assert allocate([1, 2, 2], 4, keep_one=True) == [1, 2, 1]
    assert allocate([1, 3, 3], 4, keep_one=True) == [1, 2, 1]
    assert allocate([3, 4], 100) == [3, 4]
    assert sum(allocate([700, 13, 2, 1000], 333)) == 333


def _three_sources(tmp_path):
    write(tmp_path / "big.json", alpaca_rows(40, "big"))
    write(tmp_path / "mid.jsonl", alpaca_rows(8, "mid"))
    write(tmp_path / "one.json", alpaca_rows(2, "one"))
    return [{"path": "big.json"}, {"path": "mid.jsonl"}, {"path": "one.json"}]


def test_split_stratified_deterministic(tmp_path):
    srcs = _three_sources(tmp_path)
    data = {"kind": "tasks", "test_size": 0.2, "tasks": [{"name": "mix", "sources": srcs}]}
    s1, s2 = build_stream(cfg_for(tmp_path, data)), build_stream(cfg_for(tmp_path, data, "other.yaml"))
    assert records(s1) == records(s2)  # byte for byte
    t = s1.tasks[0]
    assert Counter(x.source for x in t.test) == {"big.json": 8, "mid.jsonl": 2, "one.json": 1}
    assert Counter(x.source for x in t.train) == {"big.json": 32, "mid.jsonl": 6, "one.json": 1}
    assert not {x.uid for x in t.train} & {x.uid for x in t.test}
    assert len({x.uid for x in t.train + t.test}) == 50
    other = build_stream(cfg_for(tmp_path, {**data, "split_seed": 1}))
    assert {x.uid for x in other.tasks[0].test} != {x.uid for x in t.test}
    # a count: divided between sources, each represented
    t = build_stream(cfg_for(tmp_path, {**data, "test_size": 5})).tasks[0]
    assert Counter(x.source for x in t.test) == {"big.json": 3, "mid.jsonl": 1, "one.json": 1}


def test_caps_and_heldout(tmp_path):
    srcs = _three_sources(tmp_path)
    srcs[0]["cap"] = 10  # per source
    # the tasks share sources, so one's test data is another's training data: allowed here, where only
    # the caps are tested (by default an error, see test_test_overlap_*)
    data = {"kind": "tasks", "test_size": 0.25, "max_train_per_task": 6, "test_overlap": "allow",
            "tasks": [{"name": "a", "sources": srcs}, {"name": "b", "cap": 9, "sources": srcs[:2]}],
            "heldout": [{"name": "h", "cap": 5, "sources": [{"path": "big.json"}]}]}
    s = build_stream(cfg_for(tmp_path, data))
    a, b = s.tasks
    assert len(a.test) == 3 + 2 + 1 and len(a.train) == 6
    assert {x.source for x in a.train} == {"big.json", "mid.jsonl", "one.json"}
    # task cap 9 -> 5 + 4; test 1 + 1; train 7 capped at 6 (max_train_per_task)
    assert len(b.test) == 2 and len(b.train) == 6 and {x.source for x in b.test} == {"big.json", "mid.jsonl"}
    # the per-source cap takes the same shuffled instances whichever task holds the source
    # (b: the first 5 of the first 10 of big.json's shuffle; h: the first 5 of the same shuffle)
    h = s.heldout[0]
    assert {x.uid for x in b.train + b.test if x.source == "big.json"} <= {x.uid for x in h.test}
    assert h.train == [] and len(h.test) == 5 and all(x.task == "h" for x in h.test)
    assert s.names == ["a", "b"]


def test_example_configs_build():
    for name in ("alpaca", "prompt-answer", "chat", "superni-files"):
        s = build_stream(load_config(EXAMPLES / f"{name}.yaml"))
        assert len(s.tasks) == 2 and all(t.train and t.test for t in s.tasks), name
    s = build_stream(load_config(EXAMPLES / "alpaca.yaml"))
    assert [t.name for t in s.heldout] == ["parity"] and len(s.heldout[0].test) == 16


# ----------------------------------------------------------------------------- SuperNI stream
def test_superni_stream(superni_dir, tmp_path):
    spec = json.loads((superni_dir / "streams" / "superni16.json").read_text())
    ov = [f"data.superni.root={superni_dir}", "data.kind=superni", "data.superni.per_source_cap=10",
          "data.superni.categories=[Mathematics, Code, Dialogue]", "data.superni.order=reverse",
          "data.superni.heldout_categories=[Word Analogy]", "data.test_size=0.2"]
    s = build_stream(load_config(None, ov))
    assert s.names == [c for c in spec["orders"]["reverse"] if c in ("Mathematics", "Code", "Dialogue")]
    for t in s.tasks:
        ids = spec["categories"][t.name]
        assert {x.source for x in t.test} == set(ids)  # stratified: every SuperNI task in the test split
        assert Counter(x.source for x in t.train + t.test) == {i: 10 for i in ids}
        assert all(x.task == t.name for x in t.train)
    first = spec["categories"][s.tasks[0].name][0]
    definition = json.loads((superni_dir / "tasks" / f"{first}.json").read_text())["Definition"][0]
    assert definition in s.tasks[0].instructions()
    h = s.heldout[0]
    assert h.name == "Word Analogy" and h.train == [] and {x.source for x in h.test} == set(spec["held_out"]["Word Analogy"])
    assert records(s) == records(build_stream(load_config(None, ov)))
    with pytest.raises(InputError, match=r"data.superni.categories\[0\]: unknown category 'Poetry'"):
        build_stream(load_config(None, ov + ["data.superni.categories=[Poetry]"]))
    with pytest.raises(InputError, match="unknown order 'sideways'"):
        build_stream(load_config(None, ov + ["data.superni.order=sideways"]))


def test_superni_errors(tmp_path):
    root = tmp_path / "sni"
    (root / "streams").mkdir(parents=True)
    (root / "tasks").mkdir()
    stream = {"categories": {"A": ["task1_x"], "B": ["task2_missing"]}, "orders": {"o": ["A", "B"]}, "held_out": {}}
    write(root / "streams" / "s.json", stream)
    write(root / "tasks" / "task1_x.json", {"Definition": ["Do x."], "Instances": [
        {"id": str(i), "input": f"in {i}", "output": [f"o {i}"]} for i in range(10)]})
    base = [f"data.superni.root={root}", "data.kind=superni", "data.superni.stream=streams/s.json",
            "data.superni.order=o"]
    s = build_stream(load_config(None, base + ["data.superni.categories=[A]"]))
    assert s.names == ["A"] and len(s.tasks[0].test) == 2
    with pytest.raises(InputError, match=r"task2_missing.json: file not found \(SuperNI task of category 'B'\)"):
        build_stream(load_config(None, base))
    with pytest.raises(InputError, match="stream file not found"):
        build_stream(load_config(None, base + ["data.superni.stream=nope.json"]))


# ----------------------------------------------------------------------------- synthetic
def test_synthetic_families():
    assert len(FAMILIES) >= 8
    assert any(f.closed for f in FAMILIES.values()) and any(not f.closed for f in FAMILIES.values())
    for name, fam in FAMILIES.items():
        assert len(set(fam.instructions)) >= 3, name
        t = synthetic_task(name, 60, 12, seed=3)
        assert len(t.train) == 60 and len(t.test) == 12
        assert len(t.instructions()) >= 3, name  # one task holds several instructions
        assert not {x.uid for x in t.train} & {x.uid for x in t.test}
        assert all(len(x.output.split()) <= 6 and x.output.strip() for x in t.train + t.test), name
        assert all(x.task == name and x.source == f"synthetic:{name}" for x in t.train)
    labels = {x.output for x in synthetic_task("sentiment", 40, 1).train}
    assert labels == {"positive", "negative"}
    assert "Answer with 'positive' or 'negative'." in FAMILIES["sentiment"].instructions[0]
    assert generate("parity", 5, 1) == generate("parity", 5, 1) != generate("parity", 5, 2)


def test_synthetic_stream(tmp_path):
    data = {"kind": "synthetic", "max_train_per_task": 20,
            "synthetic": {"families": ["arithmetic", "list-ops", "sentiment"], "heldout_families": ["parity"],
                          "train_per_task": 30, "test_per_task": 8, "seed": 5}}
    s = build_stream(cfg_for(tmp_path, data))
    assert s.names == ["arithmetic", "list-ops", "sentiment"] and [t.name for t in s.heldout] == ["parity"]
    assert all(len(t.train) == 20 and len(t.test) == 8 for t in s.tasks)
    assert s.heldout[0].train == [] and len(s.heldout[0].test) == 8
    assert records(s) == records(build_stream(cfg_for(tmp_path, data, "again.yaml")))
    data["synthetic"]["seed"] = 6
    assert records(s) != records(build_stream(cfg_for(tmp_path, data)))
    assert isinstance(s.tasks[0].train[0], Instance)
