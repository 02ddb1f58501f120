"""Prompts as the model was trained on them: truncation, BOS, twins, and where evaluation stops."""
import copy

import pytest
from tokenizers.processors import TemplateProcessing

from citune.data.prompt import PromptEncoder, cut, leading_special_ids
from citune.types import Instance, Task


def test_cut_keeps_head_and_tail_or_the_end():
    ids = list(range(10))
    assert cut(ids, 4, "middle") == [0, 1, 8, 9]
    assert cut(ids, 5, "middle") == [0, 1, 2, 8, 9]
    assert cut(ids, 4, "left") == [6, 7, 8, 9]
    assert cut(ids, 12, "middle") == ids and cut(ids, 0, "left") == [] and cut(ids, -3, "middle") == []


@pytest.mark.parametrize("side", ["middle", "left"])
def test_a_long_input_is_cut_and_the_instruction_kept(tiny_bundle, side):
    tok = tiny_bundle.tokenizer
    enc = PromptEncoder(tok, chat=False, truncation=side)
    body = " ".join(f"w{i}" for i in range(300))
    ids, cut_ = enc.encode_prompt("Instruction head.", body, 40)
    text = tok.decode(ids)
    assert cut_ and len(ids) == 40 and text.startswith("Instruction head.\n\n")
    assert text.endswith("w299")  # the input's end survives either way
    assert ("w0 " in text) == (side == "middle")  # the middle cut also keeps the input's head
    assert enc.encode_prompt("Instruction head.", "short", 40) == (enc.prompt_ids("Instruction head.", "short", 99),
                                                                     False)


def test_an_instruction_that_alone_overflows_keeps_its_head(tiny_bundle):
    tok = tiny_bundle.tokenizer
    enc = PromptEncoder(tok, chat=True)
    long = "Head words first. " + " ".join(f"x{i}" for i in range(400)) + " final cue:"
    ids, was_cut = enc.encode_prompt(long, "", 64)
    text = tok.decode(ids)
    assert was_cut and len(ids) == 64
    assert "Head words first." in text and text.rstrip().endswith("<|im_start|>assistant")


def test_twins_keep_the_same_input_tokens(tiny_bundle):
    """KPIG's full and masked prompts: the input is cut once for both (before, the shorter masked
    instruction left room for more input than the full one)."""
    tok = tiny_bundle.tokenizer
    enc = PromptEncoder(tok, chat=False)
    full = "Answer with yes or no, and only with yes or no, please."
    masked = "Answer [...]."
    body = " ".join(f"w{i}" for i in range(300))
    a, _ = enc.example(full, body, "yes", 60, twin=masked)
    b, _ = enc.example(masked, body, "yes", 60, twin=full)
    tail = lambda ids, head: tok.decode(ids)[len(head) + 2:]  # noqa: E731
    assert tail(a, full) == tail(b, masked)
    plain_masked, _ = enc.example(masked, body, "yes", 60)
    assert tail(plain_masked, masked) != tail(b, masked)  # without the twin the input would differ


def bos_tokenizer(tok):
    """The SmolLM2 tokenizer made to add BOS the way Llama tokenizers do."""
    tok = copy.deepcopy(tok)
    tok._tokenizer.post_processor = TemplateProcessing(single=f"{tok.bos_token} $A",
                                                       special_tokens=[(tok.bos_token, tok.bos_token_id)])
    return tok


def test_bos_follows_the_tokenizers_convention(tiny_bundle):
    plain = tiny_bundle.tokenizer
    assert leading_special_ids(plain) == []  # SmolLM2 adds no BOS: its prompts do not change
    tok = bos_tokenizer(plain)
    assert leading_special_ids(tok) == [tok.bos_token_id]
    raw = PromptEncoder(tok, chat=False)
    ids, labels = raw.example("Do it.", "x", "y", 64)
    assert ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id and labels[0] == -100
    assert PromptEncoder(plain, chat=False).prompt_ids("Do it.", "x", 64) == ids[1:len(ids) - 2]
    # a chat template whose text starts with BOS already: not added twice
    tok.chat_template = tok.bos_token + "{{ messages[0]['content'] }}\n"
    chat = PromptEncoder(tok, chat=True).prompt_ids("Do it.", "", 64)
    assert chat[0] == tok.bos_token_id and chat[1] != tok.bos_token_id


def test_generation_stops_on_every_eos_of_the_generation_config(tiny_bundle):
    from citune.models.generate import stop_ids

    bundle = copy.copy(tiny_bundle)
    model = tiny_bundle.model
    saved = model.generation_config.eos_token_id
    try:
        model.generation_config.eos_token_id = [7, tiny_bundle.tokenizer.eos_token_id, 9]
        assert stop_ids(bundle) == sorted({7, 9, tiny_bundle.tokenizer.eos_token_id})
    finally:
        model.generation_config.eos_token_id = saved


def test_evaluation_counts_truncated_prompts_and_bound_hits(tiny_bundle, tiny_cfg):
    from citune.evaluation.evaluate import evaluate_task
    from citune.evaluation.vscore import build_checker

    cfg = tiny_cfg.model_copy(deep=True)
    cfg.eval.max_prompt_length = 64  # the chat template alone takes about 35 tokens
    cfg.eval.max_new_tokens = 3
    xs = [Instance("Repeat.", ("long " * 40) if i % 2 else "short", ("a much longer reference " * 3,), "t", "s", str(i))
          for i in range(4)]
    task = Task("t", xs, xs, scorer="exact_match")
    summary, rows = evaluate_task(tiny_bundle, task, cfg, build_checker(task))
    assert summary["truncated"] == 2
    assert summary["hit_max_new_tokens"] == 4  # a random model does not say EOS in 3 tokens
    assert summary["scorer"] == "exact_match" and summary["score"] == summary["exact_match"]
    assert {"rougeL", "exact_match"} <= set(rows[0])
    model = tiny_bundle.model
    saved = model.generation_config.eos_token_id
    try:  # every token an EOS of the generation config: each row stops at once, no bound is hit
        model.generation_config.eos_token_id = list(range(len(tiny_bundle.tokenizer)))
        summary, rows = evaluate_task(tiny_bundle, task, cfg, build_checker(task))
    finally:
        model.generation_config.eos_token_id = saved
    assert summary["hit_max_new_tokens"] == 0 and all(r["prediction"] == "" for r in rows)
