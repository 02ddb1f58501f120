"""Evaluation throughput: citune's batched greedy generation against one-at-a-time `model.generate`
on the same SuperNI test instances, SmolLM2-135M (+ the LoRA adapter citune evaluates through).

    python benchmarks/eval_throughput.py [--tasks 4] [--per-task 64] [--threads T] [--hf-batched]
    python benchmarks/eval_throughput.py --tasks 16 --per-task 3 --batch-size 32 --max-length 192 \
        --max-new-tokens 16 --out eval_throughput_pooled      # the SuperNI quality benchmark's scale

citune: the prompts of all the tasks pooled, grouped by instruction, sorted by length and cut into
batches of `eval.batch_size`, each row bound by its task's limit (as a stage's evaluation does); also
timed: the same with each task's prompts batched on their own (how evaluation batched before
pooling, which leaves small batches when a task has few test instances); left padding; each distinct instruction prefix of a batch computed once; KV
cache; a sequence leaves its batch at EOS; per-task max_new_tokens (longest reference + 4, at most
`eval.max_new_tokens`); the LoRA adapters folded into their weights while generating, as `run_jobs`
does (`models/lora_merge.py`). The adapter's B matrices are drawn at a trained adapter's scale
(`--adapter-std`), not PEFT's zeros. Reference: `model.generate` on one prompt at a time (greedy, same
per-task bound, same EOS), through the PEFT model as a user would call it. Also timed on the same
batches: citune without merging the adapters, citune without prefix sharing, and with `--hf-batched`,
`model.generate` on each batch.
Reported: instances per second, generated tokens per second, the ratio, and how many greedy
outputs are token-for-token identical to the reference.
"""
from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import SUPERNI, load_average, machine, write_result  # noqa: E402


def _split(flat: list, jobs) -> list[list]:
    """A flat list of per-row results cut back into the jobs' rows."""
    out, k = [], 0
    for j in jobs:
        out.append(flat[k:k + len(j.prompts)])
        k += len(j.prompts)
    return out


def randomise_adapters(model, std: float) -> dict:
    """LoRA B matrices drawn from N(0, std) with seed 0 (PEFT starts them at zero: the adapter would
    then change nothing, and folding it into the weights would be trivially exact)."""
    import torch

    names = [n for n, _ in model.named_parameters() if "lora_B" in n]
    if std > 0:
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.copy_(torch.randn(p.shape, generator=gen) * std)
    return {"lora_B_matrices": len(names), "lora_B_std": std if names else None}


def interleaved(jobs, timed, citune_job, hf_job, merged):
    """citune (LoRA merged, as `run_jobs` generates) and batched `model.generate` timed batch by batch
    in the order citune, HF, HF, citune: a shared VM's speed drifts by 10-30 % over minutes, and
    alternating within seconds lets the drift weigh on both alike. Returns, for each, (outputs of its
    first pass, seconds of its first pass, of its second, {load before, CPU seconds of both passes})."""
    acc = {name: {"out": [], "wall": [0.0, 0.0], "cpu": 0.0} for name in ("citune", "hf")}
    load = load_average()

    def one(name, job, fn, sample):
        with merged() if name == "citune" else nullcontext():
            out, wall, facts = timed(lambda: fn(job))
        acc[name]["wall"][sample] += wall
        acc[name]["cpu"] += facts["cpu_seconds"]
        if sample == 0:
            acc[name]["out"] += out

    for job in jobs:
        one("citune", job, citune_job, 0)
        one("hf", job, hf_job, 0)
        one("hf", job, hf_job, 1)
        one("citune", job, citune_job, 1)
    for name in acc:
        print(f"{name}: {acc[name]['wall'][0]:.1f} s, again {acc[name]['wall'][1]:.1f} s (batch by batch)", flush=True)
    return [(a["out"], a["wall"][0], a["wall"][1], {"load_average_before": load, "cpu_seconds": round(a["cpu"] / 2, 2)})
            for a in acc.values()]


def time_variants(timed, jobs, requests, cfg, model, pad, eos, citune_unmerged, outputs):
    """The variants beside the headline (adapters not merged, no prefix sharing, task by task): their
    runs and outputs (in the pooled order), added to `outputs`."""
    from citune.models.generate import greedy_batch, pool_jobs
    from citune.models.lora_merge import lora_merged

    unmerged, t_unmerged, load_u = timed(citune_unmerged)
    print(f"citune batched, LoRA not merged: {t_unmerged:.1f} s", flush=True)
    with lora_merged(model):
        plain, t_plain, load_p = timed(lambda: [s for j in jobs for s in greedy_batch(model, j.prompts, j.max_new_tokens, pad, eos)])
    print(f"citune batched, no prefix sharing: {t_plain:.1f} s", flush=True)
    per_task_jobs = [j for r in requests for j in pool_jobs([r], cfg.eval.batch_size)]
    with lora_merged(model):
        per_task, t_per_task, load_t = timed(lambda: [s for j in per_task_jobs for s in greedy_batch(
            model, j.prompts, j.max_new_tokens, pad, eos, prefix_lens=j.prefix_lens)])
    print(f"citune batched task by task: {t_per_task:.1f} s", flush=True)
    per_task_order = {(k, i): seq for j, out in zip(per_task_jobs, _split(per_task, per_task_jobs))
                      for k, i, seq in zip(j.keys, j.index, out)}
    per_task = [per_task_order[(k, i)] for j in jobs for k, i in zip(j.keys, j.index)]  # in the pooled order
    runs = {
        "citune_batched_lora_not_merged": {"seconds": round(t_unmerged, 2), **load_u},
        "citune_batched_no_prefix_sharing": {"seconds": round(t_plain, 2), **load_p},
        "citune_batched_task_by_task": {"seconds": round(t_per_task, 2), **load_t, "batches": len(per_task_jobs)},
    }
    return runs, {**outputs, "citune_batched_lora_not_merged": unmerged, "citune_batched_no_prefix_sharing": plain,
                  "citune_batched_task_by_task": per_task}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--superni", default=str(SUPERNI))
    ap.add_argument("--tasks", type=int, default=4, help="the first N tasks of the SuperNI-16 stream")
    ap.add_argument("--per-task", type=int, default=64, help="test instances per task (64 = the whole test split)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--hf-batched", action="store_true", help="also time model.generate on the same batches")
    ap.add_argument("--no-single", action="store_true",
                    help="skip one-at-a-time model.generate (the slowest reference); outputs are then compared "
                         "with batched model.generate (needs --hf-batched)")
    ap.add_argument("--model", default=None, help="model.name (default: the embedded SmolLM2-135M-Instruct)")
    ap.add_argument("--dtype", default=None, help="model.dtype, e.g. bfloat16")
    ap.add_argument("--batch-size", type=int, default=None, help="eval.batch_size (default: the config's)")
    ap.add_argument("--max-length", type=int, default=None, help="train.max_length, the prompt bound")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="eval.max_new_tokens")
    ap.add_argument("--adapter-std", type=float, default=0.003,
                    help="LoRA B matrices drawn from N(0, std) (seed 0) instead of PEFT's zeros, so that the adapters "
                         "change the outputs as a trained stage's do (0.0029 after the 8 stages of the powered inscl "
                         "run) and merging them is checked; 0 keeps the zeros")
    ap.add_argument("--ratio-only", action="store_true",
                    help="time only citune and batched model.generate (needs --hf-batched --no-single), alternating "
                         "batch by batch (citune, HF, HF, citune on each batch): the headline ratio alone, for "
                         "repeated runs; the variants (adapters not merged, no prefix sharing, task by task) are skipped")
    ap.add_argument("--out", default="eval_throughput")
    args = ap.parse_args()

    import torch

    from citune.config import load_config
    from citune.data import build_stream
    from citune.engine.trainer import configure_threads
    from citune.models.generate import GenRequest, greedy_batch, hf_generate_batch, max_new_tokens_for, pool_jobs
    from citune.models.lora_merge import lora_merged
    from citune.models import load_model
    from citune.paths import cache_root

    threads = configure_threads(args.threads, 1)
    overrides = ["data.kind=superni", f"data.superni.root={args.superni}"]
    for key, value in (("eval.batch_size", args.batch_size), ("train.max_length", args.max_length),
                       ("eval.max_new_tokens", args.max_new_tokens), ("model.name", args.model),
                       ("model.dtype", args.dtype)):
        if value is not None:
            overrides.append(f"{key}={value}")
    cfg = load_config(None, overrides)
    stream = build_stream(cfg)
    bundle = load_model(cfg.model, cache_root(), seed=cfg.seed)
    model, tok = bundle.model, bundle.tokenizer
    model.eval()
    adapters = randomise_adapters(model, args.adapter_std)
    if torch.cuda.is_available():
        model.to("cuda")
    if args.no_single and not args.hf_batched:
        sys.exit("--no-single needs --hf-batched: the outputs must be compared with a reference")
    if args.ratio_only and not (args.hf_batched and args.no_single):
        sys.exit("--ratio-only needs --hf-batched --no-single")
    pad, eos = tok.pad_token_id, [tok.eos_token_id]

    requests, bounds = [], {}
    for task in stream.tasks[: args.tasks]:
        xs = task.test[: args.per_task]
        refs = [r for x in task.train + task.test for r in x.outputs]
        bounds[task.name] = max_new_tokens_for(tok, refs, cfg.eval.max_new_tokens)
        prompts = [bundle.encoder.prompt_ids(x.instruction, x.input, cfg.train.max_length) for x in xs]
        requests.append(GenRequest(task.name, prompts, bounds[task.name], [x.instruction for x in xs]))
    jobs = pool_jobs(requests, cfg.eval.batch_size)  # as the evaluation batches a stage's tasks
    n = sum(len(j.prompts) for j in jobs)
    print(f"{n} instances of {len(bounds)} tasks, bounds {bounds}, {threads} threads", flush=True)

    def timed(fn):
        """(result, wall seconds, facts): the load before, and this process's CPU seconds (all its
        threads), which other jobs on shared cores disturb much less than wall time."""
        load = load_average()
        start, cpu = time.perf_counter(), time.process_time()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return out, time.perf_counter() - start, {"load_average_before": load,
                                                  "cpu_seconds": round(time.process_time() - cpu, 2)}

    prompt_tokens = sum(len(p) for j in jobs for p in j.prompts)
    shared_tokens = sum(n for j in jobs for n in (j.prefix_lens or []))
    # Warm-up: the first batch whole (the allocator's first buffers of that size), not timed.
    greedy_batch(model, jobs[0].prompts, jobs[0].max_new_tokens, pad, eos, prefix_lens=jobs[0].prefix_lens)

    def citune_unmerged():
        return [s for j in jobs for s in greedy_batch(model, j.prompts, j.max_new_tokens, pad, eos,
                                                       prefix_lens=j.prefix_lens)]

    def citune_pooled():  # as run_jobs generates: LoRA adapters folded into their weights meanwhile
        with lora_merged(model):
            return citune_unmerged()

    def hf_pooled():
        return [s for j in jobs for s in hf_generate_batch(model, j.prompts, j.max_new_tokens, pad, eos)]

    if args.ratio_only:
        (batched, t_first, t_last, load_b), (hfb, h_first, h_last, load_h) = interleaved(
            jobs, timed, lambda j: greedy_batch(model, j.prompts, j.max_new_tokens, pad, eos, prefix_lens=j.prefix_lens),
            lambda j: hf_generate_batch(model, j.prompts, j.max_new_tokens, pad, eos), lambda: lora_merged(model))
        runs, outputs = {}, {"citune_batched": batched}
    else:
        # citune and batched model.generate are each timed twice, first and last (citune, HF, ..., HF, citune),
        # so that a machine whose speed drifts during the run weighs on both alike; each reports the mean.
        batched, t_first, load_b = timed(citune_pooled)
        print(f"citune batched: {t_first:.1f} s", flush=True)
        if args.hf_batched:
            hfb, h_first, load_h = timed(hf_pooled)
            print(f"HF batched: {h_first:.1f} s", flush=True)
        runs, outputs = time_variants(timed, jobs, requests, cfg, model, pad, eos, citune_unmerged,
                                      {"citune_batched": batched})
        if args.hf_batched:
            _, h_last, _ = timed(hf_pooled)
            print(f"HF batched, again: {h_last:.1f} s", flush=True)
        _, t_last, _ = timed(citune_pooled)
        print(f"citune batched, again: {t_last:.1f} s", flush=True)
    t_batched = (t_first + t_last) / 2
    runs = {"citune_batched": {"seconds": round(t_batched, 2), "samples": [round(t_first, 2), round(t_last, 2)],
                               **load_b}, **runs}
    if args.hf_batched:
        runs["hf_batched"] = {"seconds": round((h_first + h_last) / 2, 2),
                              "samples": [round(h_first, 2), round(h_last, 2)], **load_h}
        outputs["hf_batched"] = hfb
    if not args.no_single:
        single, t_single, load_s = timed(lambda: [hf_generate_batch(model, [p], n, pad, eos)[0]
                                                 for j in jobs for p, n in zip(j.prompts, j.max_new_tokens)])
        runs["hf_one_at_a_time"] = {"seconds": round(t_single, 2), **load_s}
        outputs["hf_one_at_a_time"] = single
        print(f"one at a time: {t_single:.1f} s", flush=True)
    reference = "hf_batched" if args.no_single else "hf_one_at_a_time"
    single = outputs[reference]
    for name, res in runs.items():
        toks = sum(len(s) for s in outputs[name])
        res.update(instances=n, generated_tokens=toks, instances_per_second=round(n / res["seconds"], 3),
                   tokens_per_second=round(toks / res["seconds"], 2),
                   **{f"identical_to_{reference}": sum(a == b for a, b in zip(outputs[name], single))})
    differing = [{"task": key, "batched": tok.decode(a), "single": tok.decode(b)}
                 for key, a, b in zip([k for j in jobs for k in j.keys], batched, single) if a != b]
    result = {
        "machine": machine(threads),
        "model": {"name": cfg.model.name, "finetune": cfg.model.finetune, "dtype": cfg.model.dtype,
                  "adapter": adapters},
        "data": {"tasks": list(bounds), "instances": n, "max_new_tokens_by_task": bounds,
                 "prompt_tokens": prompt_tokens, "shared_prefix_tokens": shared_tokens,
                 "batch_size": cfg.eval.batch_size, "batches": len(jobs)},
        "runs": runs,
        "timing": ("citune and batched model.generate alternating batch by batch (citune, HF, HF, citune); samples are "
                   "the sums of each one's first and second timings" if args.ratio_only else
                   "each whole pass timed first and last (citune, HF, variants, HF, citune)"),
        "reference": reference,
        "ratio": round(runs[reference]["seconds"] / t_batched, 3),
        "ratio_hf_batched": round(runs["hf_batched"]["seconds"] / t_batched, 3) if args.hf_batched else None,
        "pooling_ratio": (round(runs["citune_batched_task_by_task"]["seconds"] / t_batched, 3)
                          if "citune_batched_task_by_task" in runs else None),
        "cpu_ratio": round(runs[reference]["cpu_seconds"] / runs["citune_batched"]["cpu_seconds"], 3),
        "pooling_cpu_ratio": (round(runs["citune_batched_task_by_task"]["cpu_seconds"]
                                    / runs["citune_batched"]["cpu_seconds"], 3)
                              if "citune_batched_task_by_task" in runs else None),
        "identical": sum(a == b for a, b in zip(batched, single)),
        "differing_examples": differing[:10],
        "definition": "same greedy decoding, same per-task bound and EOS; ratio = the reference's seconds "
                      "(one-at-a-time model.generate, or batched with --no-single) / citune's batched seconds over "
                      "the same instances; ratio_hf_batched = batched model.generate seconds / citune's",
    }
    print(f"ratio {result['ratio']}× ({reference}), {result['ratio_hf_batched']}× batched model.generate; "
          f"identical outputs {result['identical']}/{n}; "
          f"pooled vs task by task {result['pooling_ratio']}× (CPU time: {result['cpu_ratio']}×, "
          f"{result['pooling_cpu_ratio']}×)")
    print("wrote", write_result(args.out, result))


if __name__ == "__main__":
    main()
