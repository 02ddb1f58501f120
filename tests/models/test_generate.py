"""Batched greedy generation on the tiny random model: the same tokens as one-at-a-time
`model.generate`, sequences leaving their batch at EOS, and work shared out by whole batches."""
import random

import pytest
import torch

from citune.types import Instance
from citune.models.generate import (GenRequest, generate, greedy_batch, hf_generate_batch,
                                        make_jobs, pool_jobs, share_jobs)
from citune.models.forward import (cache_tensors, narrowest_width, pack_prompts, packed_mask, packs, prefill, prefill_packed,
                                   shared_prefix_lens, sharing_pays)


@pytest.fixture(scope="module")
def gen_bundle():
    """A tiny random model whose weights are redrawn larger, so that greedy outputs vary from
    prompt to prompt and step to step (the default init repeats one token)."""
    from citune.config import load_config
    from citune.models import load_model
    from citune.paths import cache_root

    cfg = load_config(None, ["model.name=tiny", "model.finetune=full", "model.tiny.seed=5"])
    bundle = load_model(cfg.model, cache_root())
    torch.manual_seed(0)
    with torch.no_grad():
        for p in bundle.model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.2)
    bundle.model.eval()
    return bundle


def _prompts(bundle, n=7):
    texts = [("Repeat the word.", "apple " * (i + 1)) for i in range(n - 3)] + [
        ("Translate to French:", "the cat sat on the mat"), ("Sum", "1 2 3 4"), ("Name a colour.", "")]
    return [bundle.encoder.prompt_ids(ins, inp, 128) for ins, inp in texts]


def test_batched_greedy_equals_one_at_a_time_generate(gen_bundle):
    model, tok = gen_bundle.model, gen_bundle.tokenizer
    prompts = _prompts(gen_bundle)
    batched = greedy_batch(model, prompts, 6, tok.pad_token_id, [tok.eos_token_id])
    single = [hf_generate_batch(model, [p], 6, tok.pad_token_id, [tok.eos_token_id])[0] for p in prompts]
    assert batched == single
    assert all(1 <= len(s) <= 6 for s in batched)


def test_a_sequence_leaves_its_batch_at_eos(gen_bundle):
    """Use one row's second generated token as 'EOS': that row stops there, the others go on,
    and everything still matches model.generate with the same EOS, one prompt at a time."""
    model, tok = gen_bundle.model, gen_bundle.tokenizer
    prompts = _prompts(gen_bundle, 5)
    free = greedy_batch(model, prompts, 5, tok.pad_token_id, [tok.eos_token_id])
    stop = free[2][1]
    assert stop != tok.eos_token_id
    eos = [tok.eos_token_id, stop]
    batched = greedy_batch(model, prompts, 5, tok.pad_token_id, eos)
    single = [hf_generate_batch(model, [p], 5, tok.pad_token_id, eos)[0] for p in prompts]
    assert batched == single
    assert batched[2] == free[2][:1]  # stopped before the 'EOS' token, which is not returned
    assert any(len(s) > 1 for s in batched)  # other rows went on after row 2 left


def test_shared_prefix_decoding_equals_one_at_a_time(gen_bundle):
    """Two instructions, several inputs each: each batch runs each instruction prefix once."""
    model, tok, enc = gen_bundle.model, gen_bundle.tokenizer, gen_bundle.encoder
    items = [("Translate the sentence into French, word by word.", f"the {w} sat on the mat")
             for w in ("cat", "small dog", "very old bird", "fox")]
    items += [("Add the numbers.", " ".join(str(k) for k in range(n))) for n in (2, 5, 9)]
    prompts = [enc.prompt_ids(ins, inp, 128) for ins, inp in items]
    groups = [ins for ins, _ in items]
    prefix = shared_prefix_lens(prompts, groups)
    head = len(enc._parts(items[0][0], items[0][1])[0])
    assert prefix[0] >= head - 1 and all(0 < n < len(p) for n, p in zip(prefix, prompts))
    jobs = make_jobs("t", prompts, 6, 16, groups)
    assert len(jobs) == 1 and jobs[0].prefix_lens is not None
    assert sharing_pays(jobs[0].prompts, jobs[0].prefix_lens)  # the shared path is the one tested
    batched = greedy_batch(model, jobs[0].prompts, 6, tok.pad_token_id, [tok.eos_token_id],
                           prefix_lens=jobs[0].prefix_lens)
    single = [hf_generate_batch(model, [p], 6, tok.pad_token_id, [tok.eos_token_id])[0] for p in jobs[0].prompts]
    assert batched == single


def test_sharing_pays_counts_padded_positions():
    # 4 rows of 10 sharing 8: 1 head of 8 + 4 rests of 2 = 16 positions against 40 in one pass
    assert sharing_pays([[1] * 8 + [k, k] for k in range(4)], [8] * 4)
    # 4 rows with 4 distinct 8-token heads: 4 x 8 + 4 x 2 = 40, no cheaper than 40
    assert not sharing_pays([[k] * 8 + [9, 9] for k in range(4)], [8] * 4)
    # rests of very different lengths pad badly: 1 x 2 + 2 x 18 = 38 against 2 x 20 = 40
    assert not sharing_pays([[1, 1] + [2] * 18, [1, 1, 3]], [2, 2])
    assert not sharing_pays([[1, 2], [1, 3]], [0, 0])


def test_shared_prefix_lens():
    prompts = [[1, 2, 3, 4], [1, 2, 3, 9, 9], [1, 2], [7, 7, 7]]
    assert shared_prefix_lens(prompts, ["a", "a", "a", "b"]) == [2, 2, 1, 2]


def test_generate_keeps_the_instances_order_and_batch_size_does_not_matter(gen_bundle):
    xs = [Instance("Say something.", "word " * (i % 4 + 1), ("x",), "t", "s", str(i)) for i in range(9)]
    a = generate(gen_bundle, xs, 4, batch_size=4, max_prompt_len=64)
    b = generate(gen_bundle, xs, 4, batch_size=1, max_prompt_len=64)
    assert len(a) == 9 and a == b


def test_pool_jobs_without_groups_sorts_by_decreasing_length():
    jobs = make_jobs("t", [[0] * n for n in (3, 9, 1, 9, 5)], 4, 2)
    assert [j.index for j in jobs] == [[1, 3], [4, 0], [2]] and all(j.prefix_lens is None for j in jobs)


@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_share_jobs_gives_every_batch_to_exactly_one_rank(world):
    jobs = make_jobs("a", [[1] * n for n in range(1, 12)], 4, 3) + make_jobs("b", [[1] * 7] * 5, 2, 3)
    shares = share_jobs(jobs, world)
    flat = sorted(j for s in shares for j in s)
    assert flat == list(range(len(jobs)))
    # The batches themselves (the composition) are those of a single process.
    assert [j.index for j in jobs] == [j.index for j in make_jobs("a", [[1] * n for n in range(1, 12)], 4, 3)
                                       + make_jobs("b", [[1] * 7] * 5, 2, 3)]
    loads = [sum(jobs[j].cost for j in s) for s in shares]
    assert max(loads) - min(loads) <= max(j.cost for j in jobs)


def test_eval_bound_is_respected(gen_bundle):
    model, tok = gen_bundle.model, gen_bundle.tokenizer
    out = greedy_batch(model, _prompts(gen_bundle, 3), 1, tok.pad_token_id, [tok.eos_token_id])
    assert all(len(s) <= 1 for s in out)


def test_per_row_bounds_equal_one_at_a_time_generate(gen_bundle):
    """Rows of one batch with different token bounds (tasks pooled together) each stop at their own."""
    model, tok = gen_bundle.model, gen_bundle.tokenizer
    prompts = _prompts(gen_bundle, 6)
    bounds = [1, 6, 3, 2, 6, 4]
    batched = greedy_batch(model, prompts, bounds, tok.pad_token_id, [tok.eos_token_id])
    single = [hf_generate_batch(model, [p], n, tok.pad_token_id, [tok.eos_token_id])[0]
              for p, n in zip(prompts, bounds)]
    assert batched == single
    assert [len(s) <= n for s, n in zip(batched, bounds)] == [True] * 6
    assert len(batched[0]) == 1 and max(len(s) for s in batched) > 3


def test_pool_jobs_batches_tasks_together_and_keeps_groups_adjacent():
    a = GenRequest("a", [[1] * 5, [2] * 9, [1] * 6], 3, ["x", "y", "x"])
    b = GenRequest("b", [[3] * 7, [3] * 8], 8, ["z", "z"])
    jobs = pool_jobs([a, b], batch_size=4)
    rows = [(k, i, n) for j in jobs for k, i, n in zip(j.keys, j.index, j.max_new_tokens)]
    # groups by their longest prompt: a/y (9), b/z (8, 7), a/x (6, 5); every prompt exactly once
    assert rows == [("a", 1, 3), ("b", 1, 8), ("b", 0, 8), ("a", 2, 3), ("a", 0, 3)]
    assert [len(j.prompts) for j in jobs] == [4, 1]
    # b/z share 7 tokens, a/x 5; every prompt keeps at least its last token of its own
    assert jobs[0].prefix_lens == [8, 7, 6, 5] and jobs[1].prefix_lens == [4]


def test_a_task_fills_whole_batches_of_its_own_before_pooling():
    a = GenRequest("a", [[1] * 5, [1] * 6, [1] * 7, [1] * 8, [1] * 9], 3, ["x"] * 5)
    b = GenRequest("b", [[2] * 4, [2] * 3], 8, ["z", "z"])
    jobs = pool_jobs([a, b], batch_size=4)
    assert [j.keys for j in jobs] == [["a"] * 4, ["a", "b", "b"]]
    assert jobs[0].index == [4, 3, 2, 1] and jobs[1].index == [0, 0, 1]
    # the prefix common to group x is its shortest prompt (5 tokens), each row keeping one of its own
    assert jobs[0].prefix_lens == [5, 5, 5, 5] and jobs[1].prefix_lens == [4, 3, 2]


def test_pooled_evaluation_predicts_as_task_by_task(gen_bundle):
    """Pooling the tasks of a stage changes the batches, not the greedy predictions."""
    from citune.models.generate import run_jobs

    enc = gen_bundle.encoder
    reqs = [GenRequest("t%d" % k, [enc.prompt_ids(ins, f"{ins} {w}", 128) for w in ("one", "two words", "x y z")],
                       bound, [ins] * 3)
            for k, (ins, bound) in enumerate([("Repeat it.", 2), ("Say the colour of", 5), ("Count", 3)])]
    def preds(jobs):
        out = {}
        for job, texts in zip(jobs, run_jobs(gen_bundle, jobs)):
            out.update({(k, i): t for k, i, t in zip(job.keys, job.index, texts)})
        return out
    pooled = preds(pool_jobs(reqs, 16))
    separate = preds([j for r in reqs for j in pool_jobs([r], 16)])
    assert len(pooled) == 9 and pooled == separate


def test_pack_prompts_writes_each_prefix_once_per_row_and_fills_rows_first_fit():
    a, b, c = [1, 2, 3, 4], [1, 2, 3, 5, 6], [7, 8, 9]
    rows = pack_prompts([a, b, c], [3, 3, 0], width=8)
    assert rows.ids == [[1, 2, 3, 4, 5, 6], [7, 8, 9]]  # c (3 tokens) does not fit the 2 left in row 0
    assert rows.pos == [[0, 1, 2, 3, 3, 4], [0, 1, 2]]  # each rest continues its prefix's positions
    assert rows.row_of == [0, 0, 1]
    assert rows.cols_of == [[0, 1, 2, 3], [0, 1, 2, 4, 5], [0, 1, 2]]
    narrow = pack_prompts([a, b, c], [3, 3, 0], width=5)  # b's rest does not fit after a: its prefix again
    assert narrow.ids == [[1, 2, 3, 4], [1, 2, 3, 5, 6], [7, 8, 9]]
    assert narrow.cols_of == [[0, 1, 2, 3], [0, 1, 2, 3, 4], [0, 1, 2]]


def test_narrowest_width_keeps_the_rows_and_drops_the_padding():
    a, b, c = [1, 2, 3, 4], [1, 2, 3, 5, 6], [7, 8, 9]
    # At width 8: rows [1 2 3 4 5 6] and [7 8 9], 9 tokens in 16 slots. Width 5 (the longest prompt,
    # and 9 / 2 rows rounded up) needs a third row (b's prefix again); width 6 holds them in two.
    assert narrowest_width([a, b, c], [3, 3, 0], 8, step=1) == 6
    assert narrowest_width([a, b, c], [3, 3, 0], 8, step=8) == 8  # no narrower multiple of 8
    assert narrowest_width([a, b, c], [3, 3, 0], 0, step=1) == 5  # never under the longest prompt
    rng = random.Random(0)
    for _ in range(200):
        heads = [[rng.randrange(50) for _ in range(rng.randrange(0, 30))] for _ in range(3)]
        prompts, prefix = [], []
        for _ in range(rng.randrange(2, 12)):
            h = rng.choice(heads)
            prompts.append(h + [rng.randrange(50) for _ in range(rng.randrange(1, 40))])
            prefix.append(len(h))
        full = max(64, max(map(len, prompts)))
        w = narrowest_width(prompts, prefix, 64)
        assert max(map(len, prompts)) <= w <= full
        assert len(pack_prompts(prompts, prefix, w).ids) <= len(pack_prompts(prompts, prefix, full).ids)


def test_packed_mask_lets_a_rest_see_its_prefix_and_itself_only():
    rows = pack_prompts([[1, 2, 3, 4], [1, 2, 3, 5, 6]], [3, 3], width=7)
    mask = packed_mask(rows, 7, "cpu")[0, 0]
    assert mask[4].tolist() == [True, True, True, False, True, False, False]  # b's first: prefix + itself, not a's
    assert mask[5].tolist() == [True, True, True, False, True, True, False]
    assert mask[3].tolist() == [True, True, True, True, False, False, False]
    assert mask[2].tolist() == [True, True, True, False, False, False, False]  # the prefix is causal
    assert mask[6].tolist() == [False] * 6 + [True]  # padding sees itself only (no empty softmax row)


@pytest.mark.parametrize("width", [0, 40, 512])
def test_packed_prefill_equals_padded_prefill(gen_bundle, width):
    """Logits of every prompt's last token, and its keys and values at every position it attends, as a
    padded prefill of the whole prompts gives them: one prompt per row (width 0), prefixes repeated over
    several rows (40), everything in one row (512)."""
    model, tok, enc = gen_bundle.model, gen_bundle.tokenizer, gen_bundle.encoder
    items = [("Translate the sentence into French, word by word.", f"the {w} sat on the mat")
             for w in ("cat", "small dog", "very old bird")] + [("Add.", "1 2 3 4 5"), ("Add.", "7 8")]
    prompts = [enc.prompt_ids(ins, inp, 128) for ins, inp in items]
    prefix = shared_prefix_lens(prompts, [ins for ins, _ in items])
    with torch.no_grad():
        out_p, cache_p, mask_p, last_p = prefill_packed(model, prompts, prefix, tok.pad_token_id, "cpu", width=width)
        out, cache, mask, last = prefill(model, prompts, tok.pad_token_id, "cpu")
    assert torch.equal(mask_p, mask) and torch.equal(last_p, last)
    assert torch.allclose(out_p.logits[:, -1], out.logits[:, -1], atol=1e-5)
    seen = mask.bool()[:, None, :, None]
    for (k_p, v_p), (k, v) in zip(cache_tensors(cache_p), cache_tensors(cache)):
        assert torch.allclose(torch.where(seen, k_p, 0), torch.where(seen, k, 0), atol=1e-5)
        assert torch.allclose(torch.where(seen, v_p, 0), torch.where(seen, v, 0), atol=1e-5)


def test_prefix_sharing_without_packing_equals_one_at_a_time():
    """Eager attention takes no block mask: the shared-prefix prefill (two passes) is used instead."""
    from citune.config import load_config
    from citune.models import load_model
    from citune.paths import cache_root

    cfg = load_config(None, ["model.name=tiny", "model.finetune=full", "model.tiny.seed=5",
                             "model.attn_implementation=eager"])
    bundle = load_model(cfg.model, cache_root())
    model, tok, enc = bundle.model, bundle.tokenizer, bundle.encoder
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.2)
    model.eval()
    assert not packs(model)
    items = [("Translate the sentence into French, word by word.", f"the {w} sat on the mat")
             for w in ("cat", "small dog", "very old bird", "fox")]
    prompts = [enc.prompt_ids(ins, inp, 128) for ins, inp in items]
    prefix = shared_prefix_lens(prompts, [ins for ins, _ in items])
    assert sharing_pays(prompts, prefix)
    batched = greedy_batch(model, prompts, 6, tok.pad_token_id, [tok.eos_token_id], prefix_lens=prefix)
    assert batched == [hf_generate_batch(model, [p], 6, tok.pad_token_id, [tok.eos_token_id])[0] for p in prompts]


def _random_model(cls_name: str, **extra):
    """A 2-layer random model of a real architecture, sdpa attention, weights drawn large enough that
    greedy outputs vary."""
    import transformers

    cls, cfg_cls = getattr(transformers, cls_name + "ForCausalLM"), getattr(transformers, cls_name + "Config")
    defaults = dict(vocab_size=500, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, pad_token_id=0, eos_token_id=1, bos_token_id=2)
    cfg = cfg_cls(**{**defaults, **extra})
    torch.manual_seed(0)
    model = cls._from_config(cfg, attn_implementation="sdpa").eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.2)
    return model


@pytest.mark.parametrize("name,extra,lengths,packed", [
    ("Mistral", dict(sliding_window=256), (100, 90, 80, 100, 70, 60), False),  # the window keeps part of a row
    ("Mistral", dict(sliding_window=300), (100, 90), False),  # (was: other tokens, silently)
    ("Mistral", dict(sliding_window=600), (100, 90, 80), True),  # a window wider than the row packs
    ("Lfm2", dict(layer_types=["conv", "full_attention"]), (30, 20, 10), False),  # conv layers keep no keys
    ("Falcon", dict(alibi=True, new_decoder_architecture=False, multi_query=True, parallel_attn=True, bias=True),
     (30, 20, 10), False),  # ALiBi is built from a 2-D mask
])
def test_packing_only_where_every_layer_keeps_the_whole_row(name, extra, lengths, packed):
    """Sliding windows narrower than a packed row, conv layers and ALiBi fall back to the padded prefill
    (each crashed or gave other tokens when packed); every model gives one-at-a-time generate's tokens."""
    model = _random_model(name, **extra)
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(3, 500, (n,), generator=g).tolist() for n in lengths]
    assert packs(model, max(512, *lengths)) is packed
    assert greedy_batch(model, prompts, 6, 0, [1]) == [hf_generate_batch(model, [p], 6, 0, [1])[0] for p in prompts]
