"""The IG hinge objective against a manual computation with separate forward passes."""
import pytest
import torch
import torch.nn.functional as F

from citune.types import Instance
from citune.engine.batching import collate, encode_examples
from citune.replay.kpig.objective import IGObjective
from citune.types import TrainExample
from citune.spans import mask

INS = [
    ("Classify the review. Answer with 'good' or 'bad' only.", "Great food, kind staff.", "good"),
    ("Translate the word into French. Return one word in lower case.", "cat", "chat"),
    ("Name the colour. Your answer must be a single word.", "The sky on a clear day.", "blue"),
]


def spans_of(text: str) -> list[tuple[int, int]]:
    start = text.index(". ") + 2
    return [(start, len(text) - 1)]


@pytest.fixture()
def setup(tiny_bundle):
    model = tiny_bundle.model
    was_training, threads = model.training, torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is much faster on a shared machine
    model.eval()  # no dropout: the two ways of computing must see the same network
    examples = [TrainExample(Instance(i, x, (y,)), is_replay=(k == 2)) for k, (i, x, y) in enumerate(INS)]
    spans = {i: spans_of(i) for i, _, _ in INS}
    yield tiny_bundle, examples, spans
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    torch.set_num_threads(threads)


def objective(bundle, spans, margin, lam=0.5, on="all"):
    return IGObjective(bundle.encoder, bundle.tokenizer.pad_token_id, spans, "[...]", lam, margin, on)


def example_nll(model, encoder, instruction, x, y):
    ids, labels = encoder.example(instruction, x, y, 128)
    logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].float()
    tgt = torch.tensor(labels[1:])
    keep = tgt != -100
    nll = F.cross_entropy(logits[keep], tgt[keep], reduction="none")
    return nll.sum(), keep.sum()


def manual(bundle, examples, spans, margin, lam, selected):
    """CE (token mean over the batch) and the hinge, each example run alone, unpadded."""
    sums, counts, ig = [], [], []
    for k, ex in enumerate(examples):
        x = ex.instance
        s, n = example_nll(bundle.model, bundle.encoder, x.instruction, x.input, x.output)
        sums.append(s)
        counts.append(n)
        if k in selected:
            sm, nm = example_nll(bundle.model, bundle.encoder, mask(x.instruction, spans[x.instruction]), x.input,
                                 x.output)
            ig.append(sm / nm - s / n)
    ce = torch.stack(sums).sum() / torch.stack(counts).sum()
    ig = torch.stack(ig)
    return ce, ig, ce + lam * torch.clamp(margin - ig, min=0).mean()


def batch_of(bundle, examples, obj, right=False):
    rows = encode_examples(bundle.encoder, examples, 128, obj)
    batch = collate(rows, bundle.tokenizer.pad_token_id)
    if right:  # the same rows padded on the right
        for key in [k for k in batch if k.endswith("attention_mask")]:
            prefix = key[: -len("attention_mask")]
            order = torch.argsort(1 - batch[key], dim=1, stable=True)
            for name in (prefix + "input_ids", prefix + "labels", key):
                batch[name] = batch[name].gather(1, order)
    return batch


def grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return [p.grad.clone() for p in model.parameters() if p.requires_grad]


def test_loss_matches_two_separate_forward_passes(setup):
    bundle, examples, spans = setup
    _, ig, _ = manual(bundle, examples, spans, 0.0, 0.5, {0, 1, 2})
    margin = float(ig.detach().sort().values[1:].mean())  # one example below the margin at least, one above
    obj = objective(bundle, spans, margin)
    for right in (False, True):
        loss, logs = obj.loss(bundle.model, batch_of(bundle, examples, obj, right))
        ce, ig, expected = manual(bundle, examples, spans, margin, 0.5, {0, 1, 2})
        assert loss.item() == pytest.approx(expected.item(), rel=1e-4, abs=1e-5)
        assert logs["ce"] == pytest.approx(ce.item(), rel=1e-4)
        assert logs["ig_mean"] == pytest.approx(ig.mean().item(), abs=1e-4)
        assert logs["ig_count"] == 3


def test_hinge_gradient(setup):
    bundle, examples, spans = setup
    model = bundle.model
    # Margin far below every IG: the hinge is 0 and so is its gradient; the gradient is CE's.
    obj = objective(bundle, spans, margin=-100.0)
    g_obj = grads(model, obj.loss(model, batch_of(bundle, examples, obj))[0])
    ce, _, _ = manual(bundle, examples, spans, -100.0, 0.5, {0, 1, 2})
    g_ce = grads(model, ce)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g_obj, g_ce))
    # Margin far above: the hinge is m − mean IG, its gradient −λ·d(mean IG).
    obj = objective(bundle, spans, margin=100.0)
    g_obj = grads(model, obj.loss(model, batch_of(bundle, examples, obj))[0])
    ce, ig, _ = manual(bundle, examples, spans, 100.0, 0.5, {0, 1, 2})
    g_ce = grads(model, ce)
    g_ig = grads(model, manual(bundle, examples, spans, 100.0, 0.5, {0, 1, 2})[1].mean())
    assert any(g.abs().max() > 0 for g in g_ig)
    for a, b, c in zip(g_obj, g_ce, g_ig):
        assert torch.allclose(a, b - 0.5 * c, atol=1e-6)


def test_selection_current_replay_and_no_key_parts(setup):
    bundle, examples, spans = setup
    for on, selected in (("current", {0, 1}), ("replay", {2})):
        obj = objective(bundle, spans, 1.0, on=on)
        rows = [obj.encode(ex, 128) for ex in examples]
        assert {k for k, r in enumerate(rows) if any(v != -100 for v in r["masked_labels"])} == selected
        loss, logs = obj.loss(bundle.model, batch_of(bundle, examples, obj))
        assert logs["ig_count"] == len(selected)
        assert loss.item() == pytest.approx(manual(bundle, examples, spans, 1.0, 0.5, selected)[2].item(), rel=1e-4)
    # No key parts anywhere: the marker rows are skipped and the loss is the plain CE.
    obj = objective(bundle, {}, 1.0)
    loss, logs = obj.loss(bundle.model, batch_of(bundle, examples, obj))
    assert logs["ig_count"] == 0 and logs["hinge"] == 0.0
    assert loss.item() == pytest.approx(manual(bundle, examples, spans, 1.0, 0.5, {0})[0].item(), rel=1e-4)


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_average_to_the_single_process_gradient(setup, world):
    """Issue 21, defect 4: weighted by a rank's share of response tokens (right for CE's token mean) the
    hinge's mean over examples came out wrong under several processes. Each rank's share as the trainer
    computes it (`rank_loss`), averaged as DDP averages gradients, must equal one process's gradient."""
    from citune.engine.trainer import rank_loss
    from citune.engine.batching import response_token_count

    bundle, examples, spans = setup
    obj = objective(bundle, spans, margin=5.0, on="replay")  # only the third example is selected for the hinge
    rows = encode_examples(bundle.encoder, examples, 128, obj)
    resp = [response_token_count(r) for r in rows]
    params = [p for p in bundle.model.parameters() if p.requires_grad]
    batch_idx, pad = [0, 1, 2], bundle.tokenizer.pad_token_id

    def grads(rank, world):
        loss, _ = rank_loss(bundle.model, obj, (), rows, resp, batch_idx, rank, world, pad, "cpu")
        return torch.autograd.grad(loss, params, allow_unused=True)

    one = grads(0, 1)
    ranks = [grads(r, world) for r in range(world)]
    for k, g in enumerate(one):
        if g is None:
            continue
        avg = sum(r[k] for r in ranks if r[k] is not None) / world
        assert torch.allclose(avg, g, atol=1e-6, rtol=1e-4)
