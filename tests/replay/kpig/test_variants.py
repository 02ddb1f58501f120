"""Instruction diversity: variants keep key parts verbatim, losers are rejected and counted, deterministic."""

import numpy as np
import pytest

from citune.replay.kpig.config import KPIGConfig
from citune.types import Instance
from citune.types import TrainExample
from citune.replay.kpig.variants import diversify, filter_variants, make_variants, rephrase, reorder, variant_spans
from citune.data.instructions import heuristic_spans, span_texts

INSTRUCTIONS = [
    "In this task, you are given a text from tweets. Your task is to classify given tweet text into two "
    "categories: 1) positive, and 2) negative based on its content.",
    "You are given a question. Answer with 'yes' or 'no'. The question is about geography.",
]


@pytest.mark.parametrize("instruction", INSTRUCTIONS)
def test_template_variants_keep_key_parts(instruction):
    spans = heuristic_spans(instruction, ["positive", "negative"])
    parts = span_texts(instruction, spans)
    assert parts
    variants, rejected = make_variants(instruction, spans, 4, KPIGConfig(variants=4))
    assert len(variants) == 4 and len(set(variants)) == 4 and rejected == 0
    assert instruction not in variants
    for v in variants:
        assert all(p in v for p in parts)
        assert span_texts(v, variant_spans(v, parts)) == parts
    assert make_variants(instruction, spans, 4, KPIGConfig(variants=4)) == (variants, 0)  # deterministic


def test_rewrites_leave_key_parts_alone():
    text = "You are given a list. Your task is to sort it. Return only the sorted list."
    spans = [(text.index("Your task"), text.index("sort it") + 7)]
    assert rephrase(text, spans).startswith("You are provided with a list. Your task is to sort it.")
    assert reorder(text, spans, keys_first=True) == ("Your task is to sort it. You are given a list. "
                                                      "Return only the sorted list.")


def test_a_variant_that_loses_a_key_part_is_rejected_and_counted():
    ins = "Answer with 'yes' or 'no'."
    candidates = ["Reply: answer with 'yes' or 'no'.", "Answer with 'yes' or 'no', please.", ins,
                  "Your task: Answer with 'yes' or 'no'.", "Answer with 'yes' or 'no'. Think first."]
    kept, rejected = filter_variants(ins, candidates, ["Answer with 'yes' or 'no'"], 2)
    assert kept == ["Answer with 'yes' or 'no', please.", "Your task: Answer with 'yes' or 'no'."]
    assert rejected == 1  # the lower-case one; the copy of the original is skipped, not rejected


def test_diversify_is_deterministic_and_draws_from_the_variants():
    a = Instance("Say 'a'.", "x", ("a",))
    b = Instance("Say 'b'.", "y", ("b",))
    examples = [TrainExample(a), TrainExample(b, is_replay=True)] * 20
    variants = {"Say 'a'.": ["Task: Say 'a'.", "Please. Say 'a'."]}
    one = diversify(examples, variants, np.random.default_rng(3))
    two = diversify(examples, variants, np.random.default_rng(3))
    assert [e.shown_instruction for e in one] == [e.shown_instruction for e in two]
    shown_a = {e.shown_instruction for e in one if e.instance is a}
    assert shown_a == {"Say 'a'.", "Task: Say 'a'.", "Please. Say 'a'."}
    assert all(e.shown_instruction == "Say 'b'." and e.is_replay for e in one if e.instance is b)
    assert all(e.instance in (a, b) for e in one)  # instances are not modified


def rewrite(body: dict) -> str:
    prompt = body["messages"][0]["content"]
    return ("Instruction: Think about it, then answer with 'yes' or 'no'." if "reason" in prompt else
            "Decide and answer with 'yes' or 'no'." if "concrete" in prompt else "Say yes or no.")


def test_llm_rewriter_rejects_and_caches(tmp_path, llm_server):
    server = llm_server(answer=rewrite)
    try:
        kcfg = KPIGConfig(rewriter="llm", endpoint_url=server.url, variants=4)
        ins = "You get a claim. Then answer with 'yes' or 'no'."
        spans = [(ins.index("answer"), len(ins) - 1)]
        variants, rejected = make_variants(ins, spans, 4, kcfg, tmp_path)
        assert variants == ["Decide and answer with 'yes' or 'no'.", "Think about it, then answer with 'yes' or 'no'."]
        assert rejected == 2  # "add a constraint" and "breadth rewrite" lost the key part
        assert len(list((tmp_path / "variants").glob("*.json"))) == 4
    finally:
        server.close()
    assert make_variants(ins, spans, 4, kcfg, tmp_path) == (variants, 2)  # from the cache, server gone
