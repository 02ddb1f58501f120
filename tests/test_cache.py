"""The keyed disk cache (citune/cache.py): values round-trip, another process's batches are found, and a
run of misses does not list the directory again and again (a cold cache of N entries cost O(N²))."""
from pathlib import Path

import numpy as np

from citune.cache import KeyedStore, content_key
from citune.replay.kpig.config import KPIGConfig
from citune.replay.kpig.keyparts import KeyPartExtractor
from citune.types import Instance, Task


def count_listings(monkeypatch) -> list[Path]:
    seen = []
    real = Path.glob

    def glob(self, pattern):
        seen.append(self)
        return real(self, pattern)

    monkeypatch.setattr(Path, "glob", glob)
    return seen


def test_values_round_trip_and_another_writer_is_seen(tmp_path):
    a, b = KeyedStore(tmp_path / "s", "npz"), KeyedStore(tmp_path / "s", "npz")
    a.put_many({"k1": [1.0, 2.0]})
    assert np.array_equal(b.get_many(["k1"])["k1"], np.float32([1.0, 2.0]))
    b.put_many({"k2": [3.0, 4.0]})
    assert set(a.get_many(["k1", "k2"])) == {"k1", "k2"}  # a batch written by another store is read
    j = KeyedStore(tmp_path / "j", "json")
    j.put_many({content_key("a", "b"): {"x": [1, 2]}})
    assert KeyedStore(tmp_path / "j", "json").get_many([content_key("a", "b")]) == {content_key("a", "b"): {"x": [1, 2]}}
    assert content_key("ab", "c") != content_key("a", "bc")


def test_misses_after_own_writes_do_not_list_the_directory_again(tmp_path, monkeypatch):
    s = KeyedStore(tmp_path / "s", "json")
    s.put_many({"first": 1})
    listings = count_listings(monkeypatch)
    for i in range(50):  # miss, compute, store: the pattern of a cold cache
        assert s.get_many([f"k{i}"]) == {}
        s.put_many({f"k{i}": i})
    assert len(listings) <= 1
    assert s.get_many(["k7", "first"]) == {"k7": 7, "first": 1}


def test_key_parts_of_a_task_are_cached_in_one_batch(tmp_path, monkeypatch):
    instructions = [f"Answer with yes or no: is {i} even?" for i in range(40)]
    task = Task("t", [Instance(ins, "", ("yes",), "t", uid=str(i)) for i, ins in enumerate(instructions)], [])
    listings = count_listings(monkeypatch)
    spans = KeyPartExtractor(KPIGConfig(), tmp_path).task_spans(task)
    assert list(spans) == instructions and all(spans.values())
    assert len(listings) <= 1
    assert len(list((tmp_path / "keyparts").iterdir())) == 1  # one batch file for the task
    again = KeyPartExtractor(KPIGConfig(), tmp_path).task_spans(task)
    assert again == spans
