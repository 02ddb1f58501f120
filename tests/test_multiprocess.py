"""Several processes: two CPU processes over gloo against one process, as DDP, FSDP2 and DeepSpeed
ZeRO-2 and ZeRO-3.

The two processes are started the way the `cpu-2proc` profile launches them
(`citune.launch.launch_command`: torchrun --standalone --nproc_per_node 2 -m citune ...):
`accelerate launch --cpu --num_processes 2` starts several CPU processes only through mpirun,
and otherwise starts a single one. The FSDP2 run is the same with Accelerate's FSDP2 switched on
by tests/fsdp_on_cpu.py (Accelerate allows FSDP only on accelerator devices): parameters sharded
across the two ranks, evaluation in lockstep, checkpoints gathered (models/sharding.py). The
DeepSpeed runs switch Accelerate to DeepSpeed the same way (tests/deepspeed_on_cpu.py): one engine
for the run with its optimizer reset per stage (engine/zero.py); ZeRO-3 shards the parameters as
FSDP2 does. They are skipped where DeepSpeed is not installed.

Every rank trains on a slice of each global batch with its loss weighted by its share of the
batch's response tokens, so two ranks optimise exactly what one process optimises; evaluation deals
whole length-sorted batches to ranks, so a batch's composition does not change. Tolerances of the
end-to-end comparison (the small tiny-model stream below, 2 stages, float32):
- replay sets: byte-identical replay.jsonl (selection is computed identically on every rank);
- training: the same steps, and every logged loss within 1e-4 (relative) of the single process
  (the slices are padded to other widths, so float rounding may differ in the last digits);
- evaluation: at least 7 of every 8 predictions identical, every score-matrix entry within 12.5
  ROUGE-L points (one prediction of a task's 8). Observed here (2026-12-03; DDP, FSDP2, ZeRO-2
  and ZeRO-3 alike): all predictions and replay sets identical, losses within 3e-7.
Also: only the main process writes the run directory and prints the summary.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "examples" / "tiny.yaml"
# Two tasks and a held-out one; batches of 3 leave a one-row batch in stage 2 (28 examples), so
# one rank gets no row of it and runs a zero-weighted step; eval batches of 4 give 2 per task.
# Updates every 3 batches leave a shorter last group in both stages (8 and 10 batches). Replay is
# InsCL's (sentence encoder, tags, Wasserstein plan: models loaded beside the trained one), and
# single-task experts (eval.ub=expert) are trained too, each run in a cache of its own.
OVERRIDES = ["replay.strategy=inscl", "eval.ub=expert", "train.grad_accum=3", "data.synthetic.families=[sentiment,parity]", "data.synthetic.heldout_families=[arithmetic]",
             "data.synthetic.train_per_task=24", "data.synthetic.test_per_task=8", "train.epochs=1",
             "train.batch_size=3", "eval.batch_size=4"]


def _env():
    return {**os.environ, "CITUNE_QUIET": "1", "OMP_WAIT_POLICY": "PASSIVE"}


def _run(cmd, env):
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _own_cache(parent: Path) -> str:
    """`run.cache_dir=` a cache of the run's own (its experts, embeddings and tags computed anew), with the
    converted embedded weights linked in from the shared cache: converting the GGUF again in every run, and
    on every rank, only costs time (about 20 s of CPU each)."""
    from citune.models.embedded import embedded_model_dir
    from citune.paths import cache_root

    cache = parent / "cache"
    (cache / "models").mkdir(parents=True)
    (cache / "models" / "smollm2-135m-instruct").symlink_to(embedded_model_dir(cache_root()))
    return f"run.cache_dir={cache}"


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "run"
    return out, _run([sys.executable, "-m", "citune", "run", str(TINY), "-o", str(out), *OVERRIDES,
                      _own_cache(out.parent)], _env())


# The same two processes, with Accelerate switched to FSDP2 or DeepSpeed by a script (see the files).
SWITCHED = {"ddp": [], "fsdp2": ["fsdp_on_cpu.py"], "zero2": ["deepspeed_on_cpu.py", "2"],
            "zero3": ["deepspeed_on_cpu.py", "3"]}
KIND = {"ddp": "MULTI_CPU", "fsdp2": "FSDP", "zero2": "DEEPSPEED", "zero3": "DEEPSPEED"}
SHARDS_PARAMETERS = {"fsdp2", "zero3"}


@pytest.fixture(scope="module", params=list(SWITCHED))
def runs(request, single, tmp_path_factory):
    """(single-process run, two-process run, its setup (a key of SWITCHED), the two-process launch)."""
    from citune.launch import launch_command, launch_env

    if request.param.startswith("zero"):
        pytest.importorskip("deepspeed")
    two = tmp_path_factory.mktemp(request.param) / "run"
    cmd = launch_command("cpu-2proc", ["run", str(TINY), "-o", str(two), *OVERRIDES, _own_cache(two.parent)],
                         num_processes=2)
    if SWITCHED[request.param]:
        script, *args = SWITCHED[request.param]
        at = cmd.index("-m", cmd.index("--nproc_per_node"))
        cmd[at: at + 2] = [str(ROOT / "tests" / script), *args]
    proc = _run(cmd, launch_env("cpu-2proc", _env()))
    return single[0], two, request.param, proc


def _stages(run: Path):
    return sorted(p for p in (run / "stages").iterdir() if p.is_dir())


def test_replay_sets_are_identical(runs):
    one, two, _, _ = runs
    for a, b in zip(_stages(one)[1:], _stages(two)[1:]):
        assert (a / "replay.jsonl").read_bytes() == (b / "replay.jsonl").read_bytes(), a.name


def test_training_losses_match(runs):
    one, two, _, _ = runs
    for a, b in zip(_stages(one)[1:], _stages(two)[1:]):
        la = [json.loads(x) for x in (a / "train_log.jsonl").read_text().splitlines()]
        lb = [json.loads(x) for x in (b / "train_log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in la] == [r["step"] for r in lb]
        assert [r["tokens"] for r in la] == [r["tokens"] for r in lb]  # tokens of the global batches
        for ra, rb in zip(la, lb):
            assert abs(ra["loss"] - rb["loss"]) <= 1e-4 * max(1.0, abs(ra["loss"])), (a.name, ra, rb)


def test_evaluation_matches(runs):
    one, two, _, _ = runs
    for a, b in zip(_stages(one), _stages(two)):
        ea, eb = (json.loads((d / "eval.json").read_text()) for d in (a, b))
        assert ea["predictions"].keys() == eb["predictions"].keys()
        for task, rows in ea["predictions"].items():
            other = eb["predictions"][task]
            assert [r["uid"] for r in rows] == [r["uid"] for r in other]
            same = sum(r["prediction"] == s["prediction"] for r, s in zip(rows, other))
            assert same >= len(rows) - len(rows) // 8, (a.name, task, same, len(rows))
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    for key in ("matrix", "heldout_matrix"):
        diff = np.abs(np.array(ma[key], dtype=float) - np.array(mb[key], dtype=float))
        assert np.nanmax(diff) <= 12.5, (key, ma[key], mb[key])


def test_experts_are_trained_and_match(runs):  # each expert: its own model (under DeepSpeed, its own engine)
    one, two, _, _ = runs
    ua, ub = (json.loads((d / "manifest.json").read_text())["expert_ub"] for d in (one, two))
    assert len(ua) == len(ub) == 2 and np.allclose(ua, ub, atol=12.5), (ua, ub)
    assert len(list((two.parent / "cache" / "experts").glob("*.json"))) == 2


def test_only_the_main_process_writes_and_reports(runs):
    one, two, _, proc = runs
    assert "Run directory:" in proc.stdout
    names = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())  # noqa: E731
    assert [n for n in names(two) if "/logs/" not in n] == [n for n in names(one) if "/logs/" not in n]
    manifest = json.loads((two / "manifest.json").read_text())
    assert all(s["status"] == "done" for s in manifest["stages"])
    assert [s["processes"] for s in manifest["stages"][1:]] == [2, 2]  # really two ranks
    assert [s["processes"] for s in json.loads((one / "manifest.json").read_text())["stages"][1:]] == [1, 1]
    assert all("peak_rss_mb" in s for s in manifest["stages"])


def test_the_manifest_names_the_distributed_type(runs):  # and whether the parameters really were sharded
    one, two, setup, _ = runs
    stages = json.loads((two / "manifest.json").read_text())["stages"][1:]
    assert [s["distributed"] for s in stages] == [KIND[setup]] * 2
    assert [s["sharded"] for s in stages] == [setup in SHARDS_PARAMETERS] * 2
    single = json.loads((one / "manifest.json").read_text())["stages"][1:]
    assert [(s["distributed"], s["sharded"]) for s in single] == [("NO", False)] * 2


def test_rank_slices_reproduce_the_single_process_gradient():
    """The weighting of train_stage, checked in-process: per-rank token-mean losses weighted by
    world × (rank tokens / batch tokens) average (as DDP does) to the full batch's gradient."""
    from citune.engine.batching import rank_slice

    torch.manual_seed(0)
    w = torch.randn(5, 3, requires_grad=True)
    x, mask = torch.randn(7, 4, 5), torch.rand(7, 4) > 0.3

    def loss(rows):
        nll = ((x[rows] @ w) ** 2).sum(-1)
        return (nll * mask[rows]).sum() / mask[rows].sum()

    batch = list(range(7))
    full = torch.autograd.grad(loss(batch), w)[0]
    for world in (2, 3):
        grads = []
        for rank in range(world):
            part = rank_slice(batch, rank, world)
            weight = world * mask[part].sum() / mask[batch].sum()
            grads.append(torch.autograd.grad(loss(part) * weight, w)[0])
        assert torch.allclose(torch.stack(grads).mean(0), full, atol=1e-6)
