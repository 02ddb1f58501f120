"""Key-part extraction (heuristic on real SuperNI definitions, llm through a local endpoint), masking, cache."""
import json

import pytest

from citune.cache import store
from citune.config import load_config
from citune.replay.kpig.config import KPIGConfig
from citune.types import Instance, Stream, Task
from citune.data.instructions import heuristic_spans, label_sets, span_texts
from citune.replay.kpig.keyparts import KeyPartExtractor, keyparts_report, parse_json_list
from citune.spans import mask, merge_spans


def superni_task(superni_dir, name: str, n: int = 60) -> Task:
    data = json.loads((superni_dir / "tasks" / f"{name}.json").read_text())
    ins = data["Definition"][0]
    inst = [Instance(ins, x["input"], tuple(x["output"]), name) for x in data["Instances"][:n]]
    return Task(name, inst, [])


def parts_of(task: Task) -> tuple[str, list[str]]:
    ins = task.train[0].instruction
    return ins, span_texts(ins, heuristic_spans(ins, label_sets(task)[ins]))


def test_yes_no_tasks(superni_dir):
    task = superni_task(superni_dir, "task242_tweetqa_classification")
    ins, parts = parts_of(task)
    assert sorted(label_sets(task)[ins]) == ["no", "yes"]
    assert any('"yes"' in p for p in parts) and any('"no"' in p for p in parts)
    task = superni_task(superni_dir, "task1624_disfl_qa_question_yesno_classification")
    ins, parts = parts_of(task)
    assert "Classify whether the question is answerable or not based on the given context" in parts
    assert not any("disfluent question is a question" in p for p in parts)  # the description stays


def test_label_set_task(superni_dir):
    task = superni_task(superni_dir, "task195_sentiment140_classification")
    ins, parts = parts_of(task)
    assert sorted(label_sets(task)[ins]) == ["negative", "positive"]
    assert "positive" in parts and "negative" in parts
    assert not any("text from tweets" in p for p in parts)


def test_format_constrained_task(superni_dir):
    task = superni_task(superni_dir, "task064_all_elements_except_first_i")
    ins, parts = parts_of(task)
    assert label_sets(task)[ins] is None
    assert any(p.startswith("You need to list all the elements of A after the first i elements") for p in parts)
    assert not any("you are given inputs i and A" in p for p in parts)


def test_heuristic_cues_and_merging():
    text = "Read the review. Answer with 'good' or 'bad', nothing else. Keep it under 3 words."
    parts = span_texts(text, heuristic_spans(text))
    assert parts == ["Answer with 'good' or 'bad'", "Keep it under 3 words"]  # clause-level
    text = 'The labels are "A", "B"; pick the best.'
    assert span_texts(text, heuristic_spans(text)) == ['"A", "B"']  # joined across ", "
    assert heuristic_spans("Tell me a story about a dog.") == []


def test_masking_offsets_exact():
    assert merge_spans([(5, 7), (0, 3), (2, 4), (4, 5), (9, 9)]) == [(0, 7)]
    text = "Say 'yes' or 'no'. Then stop."
    spans = [(4, 9), (13, 17)]
    assert span_texts(text, spans) == ["'yes'", "'no'"]
    assert mask(text, spans) == "Say [...] or [...]. Then stop."
    assert mask(text, spans, "<KEY>") == "Say <KEY> or <KEY>. Then stop."
    assert mask(text, []) == text
    with pytest.raises(ValueError):
        mask(text, [(3, 99)])


def test_masking_real_definition(superni_dir):
    task = superni_task(superni_dir, "task195_sentiment140_classification")
    ins = task.train[0].instruction
    spans = heuristic_spans(ins, label_sets(task)[ins])
    masked = mask(ins, spans)
    assert masked.count("[...]") == len(spans)
    assert "positive" not in masked and "negative" not in masked
    rebuilt, pos = [], 0
    for s, e in spans:
        rebuilt += [ins[pos:s], "[...]"]
        pos = e
    assert masked == "".join(rebuilt) + ins[pos:]


def test_cache_is_used(tmp_path):
    ex = KeyPartExtractor(KPIGConfig(), tmp_path)
    text = "Answer with 'x'."
    first = ex.spans(text, ["x"])
    files = list((tmp_path / "keyparts").glob("*.json"))
    assert len(files) == 1
    (key,) = json.loads(files[0].read_text())
    files[0].write_text(json.dumps({key: [[0, 6]]}))  # what is cached is what is returned
    store.cache_clear()  # as a new process reads it
    assert ex.spans(text, ["x"]) == [(0, 6)]
    assert ex.spans(text, ["y"]) == first  # another label set is another key


def test_llm_extractor_through_an_endpoint(llm_server, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MY_KEY", "sekret-123")
    srv = llm_server(['Sure! ```json\n["Answer with positive or negative", "not in the text"]\n```'])
    kcfg = KPIGConfig(extractor="llm", endpoint_url=srv.url + "/v1", endpoint_model="m", api_key_env="MY_KEY",
                      retries=1)
    text = "Classify the tweet. Answer with positive or negative."
    ex = KeyPartExtractor(kcfg, tmp_path)
    assert span_texts(text, ex.spans(text)) == ["Answer with positive or negative"]
    assert ex.stats["discarded"] == 1
    first = srv.requests[0]
    assert first["path"] == "/v1/chat/completions" and first["auth"] == "Bearer sekret-123"
    assert first["body"]["model"] == "m"
    assert ex.spans(text) == [(20, 52)]  # cached: no second request
    assert len(srv.requests) == 1
    # Invalid JSON twice (retries=1): the heuristic spans are used, counted, and not cached.
    srv.replies = ["no json here", '{"a": 1}']
    other = "Return only the first word."
    assert ex.spans(other) == heuristic_spans(other)
    assert ex.stats["fallbacks"] == 1
    assert "sekret-123" not in caplog.text


def test_parse_json_list():
    assert parse_json_list('["a", "b"]') == ["a", "b"]
    assert parse_json_list("x [1, 2] y") is None
    assert parse_json_list("nothing") is None


def test_keyparts_report(tmp_path):
    cfg = load_config(None, [])
    ins = "Classify the review. Answer with 'good' or 'bad'."
    task = Task("reviews", [Instance(ins, f"r{i}", ("good" if i % 2 else "bad",)) for i in range(6)], [])
    held = Task("held", [], [Instance("Write a poem [about] cats.", "", ("meow",))])
    text = keyparts_report(cfg, Stream([task], [held]), tmp_path)
    assert "reviews" in text and "held" in text
    assert "«Answer with 'good' or 'bad'»" in text
    assert "labels: bad | good" in text
    assert "\\[about]" in text  # rich markup in the instruction is escaped
