"""A run directory packs into one archive that restores its files byte for byte, the same bytes every
time, without plots, reports and model files; a path that is no archive is bad input."""
import gzip
import json

import pytest

from citune.errors import InputError
from citune.runs.archive import (
    SUFFIX, find_runs, open_run, open_runs, pack_run, read_archive, unpack_run, verify_archive, write_archive,
)

KEPT = {
    "config.yaml": "seed: 1\nreplay:\n  strategy: random\n",
    # as citune.io.write_json writes: indent 2, non-ASCII kept, a final newline
    "manifest.json": json.dumps({"strategy": "random", "seed": 1, "stages": [{"index": 0, "status": "done"}]},
                                indent=2, ensure_ascii=False) + "\n",
    "metrics.json": json.dumps({"ap": 41.333333333333336, "bwt": -0.0, "tasks": ["a", "b"], "fwt": None,
                                "note": "é ✓"}, indent=2, ensure_ascii=False) + "\n",
    "stages/00-base/eval.json": json.dumps({"stage": 0, "predictions": {"a": [{"uid": "u1", "prediction": "x",
                                                                              "rougeL": 100.0}]}},
                                           indent=2, ensure_ascii=False) + "\n",
    "stages/01-a/replay.jsonl": "",  # nothing replayed at the first stage
    "stages/02-b/replay.jsonl": "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                        for r in [{"uid": "u1", "task": "a"}, {"uid": "u2", "task": "a", "w": 0.5}]),
    # written some other way: kept as text, still restored exactly
    "inscl_distances.json": '{"a": {"b": 0.5}}',
    "stages/02-b/train_log.jsonl": '{"step": 1, "loss": NaN}\n\n{"step": 2}\r\n',
    "notes.txt": "free text\nwith two lines",
}
SKIPPED = {
    "plots/score_matrix.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
    "report.md": b"# report\n",
    "report.html": b"<html></html>",
    "checkpoints/stage-01.safetensors": b"\x00" * 64,
    "model.safetensors": b"\x00" * 64,
    "adapter_model.bin": b"\x01" * 64,
    "adapter_config.json": b"{}",
    "checkpoint-4/optimizer.pt": b"\x02" * 16,
    "model/config.json": b"{}",
    ".manifest.json.abc.tmp": b"partial",
}


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "random-seed1"
    for rel, text in KEPT.items():
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_bytes(text.encode("utf-8"))
    for rel, data in SKIPPED.items():
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_bytes(data)
    return run


def files_below(path):
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def test_unpack_restores_the_packed_files_byte_for_byte(run_dir, tmp_path):
    archive = write_archive(run_dir, tmp_path / "out" / ("random-seed1" + SUFFIX))
    restored = unpack_run(archive, tmp_path / "restored")
    assert files_below(restored) == {rel: text.encode("utf-8") for rel, text in KEPT.items()}
    assert verify_archive(run_dir, archive) == []
    assert read_archive(archive) == KEPT


def test_json_is_stored_parsed_when_it_writes_back_identically(run_dir):
    files = pack_run(run_dir)["files"]
    assert files["metrics.json"]["json"]["ap"] == 41.333333333333336
    assert files["stages/02-b/replay.jsonl"]["jsonl"][1] == {"uid": "u2", "task": "a", "w": 0.5}
    assert files["stages/01-a/replay.jsonl"]["jsonl"] == []
    assert files["inscl_distances.json"] == {"text": KEPT["inscl_distances.json"]}
    assert files["stages/02-b/train_log.jsonl"] == {"text": KEPT["stages/02-b/train_log.jsonl"]}
    assert files["config.yaml"] == {"text": KEPT["config.yaml"]}


def test_skipped_files_are_left_out_and_listed(run_dir):
    packed = pack_run(run_dir)
    assert set(packed["files"]) == set(KEPT)
    assert {"plots/", "checkpoints/", "checkpoint-4/", "model/", "report.md", "report.html", "model.safetensors",
            "adapter_model.bin", "adapter_config.json", ".manifest.json.abc.tmp"} == set(packed["skipped"])
    assert packed["run"] == "random-seed1"


def test_packing_twice_gives_the_same_bytes(run_dir, tmp_path):
    a = write_archive(run_dir, tmp_path / "a" / "x.run.json.gz").read_bytes()
    b = write_archive(run_dir, tmp_path / "b" / "x.run.json.gz").read_bytes()
    assert a == b
    assert gzip.decompress(a).startswith(b'{"format":"citune-run-archive"')


def test_default_destination_is_beside_the_run_directory(run_dir):
    archive = write_archive(run_dir)
    assert archive == run_dir.parent / ("random-seed1" + SUFFIX)
    assert find_runs(run_dir.parent) == [archive]  # the archive wins over the directory of the same name


def test_open_run_yields_a_run_directory_named_after_the_run(run_dir, tmp_path):
    archive = write_archive(run_dir, tmp_path / "store" / ("random-seed1" + SUFFIX))
    with open_run(archive) as d:
        assert d.name == "random-seed1"
        assert (d / "stages" / "02-b" / "replay.jsonl").read_text(encoding="utf-8") == KEPT["stages/02-b/replay.jsonl"]
        kept = d
    assert not kept.exists()
    with open_run(run_dir) as d:
        assert d == run_dir


def test_open_runs_restores_every_run_of_a_folder(run_dir, tmp_path):
    store = tmp_path / "store"
    write_archive(run_dir, store / ("random-seed1" + SUFFIX))
    (store / "none-seed1").mkdir()
    (store / "none-seed1" / "manifest.json").write_text("{}\n", encoding="utf-8")
    (store / "comparison.json").write_text("{}\n", encoding="utf-8")
    with open_runs(store) as parent:
        assert parent.name == "store"
        assert sorted(p.name for p in parent.iterdir()) == ["none-seed1", "random-seed1"]
        assert files_below(parent / "random-seed1") == {rel: t.encode("utf-8") for rel, t in KEPT.items()}


def gz(text: bytes) -> bytes:
    return gzip.compress(text, mtime=0)


BAD = {
    "missing": None,
    "empty": b"",
    "not-gzip": b"not gzip",
    "not-json": gz(b"not json"),
    "other-format": gz(b'{"format": "something else", "files": {}}'),
    "other-version": gz(b'{"format": "citune-run-archive", "version": 99, "files": {}}'),
    "outside-path": gz(b'{"format": "citune-run-archive", "version": 1, "files": {"../x": {"text": "y"}}}'),
    "unknown-style": gz(b'{"format": "citune-run-archive", "version": 1, '
                        b'"files": {"a.json": {"json": 1, "style": "?"}}}'),
}


@pytest.mark.parametrize("content", list(BAD.values()), ids=list(BAD))
def test_a_bad_archive_is_bad_input(tmp_path, content):
    path = tmp_path / ("bad" + SUFFIX)
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as e:
        read_archive(path)
    assert str(path) in e.value.line()
    with pytest.raises(InputError):
        unpack_run(path, tmp_path / "out")
    assert not (tmp_path / "x").exists()


def test_a_directory_is_not_an_archive(tmp_path, run_dir):
    with pytest.raises(InputError):
        read_archive(run_dir)
    with pytest.raises(InputError):
        pack_run(tmp_path / "missing")
